package cn.baomi.agent.platform

import android.Manifest
import android.app.admin.DevicePolicyManager
import android.content.ComponentName
import android.content.Context
import android.content.pm.PackageManager
import android.os.Build
import android.os.UserManager
import cn.baomi.agent.posture.AdminRole
import cn.baomi.agent.posture.DevicePolicyGateway
import cn.baomi.agent.posture.EnforcementException

/**
 * [DevicePolicyGateway] on DevicePolicyManager. As device owner every call goes to the
 * device; as profile owner of a company-owned work profile (API 30+) camera and capture go to
 * the parent profile instance, which reaches the personal side too. Uses `setCameraDisabled`,
 * not the DISALLOW_CAMERA restriction; a plain device admin cannot disable the camera since
 * Android 10 (API 29). Every call newer than minSdk 26 is guarded by `SDK_INT`.
 */
class DpmGateway(
    private val context: Context,
    private val admin: ComponentName,
) : DevicePolicyGateway {
    private val dpm = context.getSystemService(DevicePolicyManager::class.java)

    override fun role(): AdminRole {
        val pkg = context.packageName
        return when {
            dpm.isDeviceOwnerApp(pkg) -> AdminRole.DEVICE_OWNER
            dpm.isProfileOwnerApp(pkg) ->
                if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R && dpm.isOrganizationOwnedDeviceWithManagedProfile) {
                    AdminRole.PROFILE_OWNER_ORG_OWNED
                } else {
                    AdminRole.PROFILE_OWNER_PERSONAL
                }
            dpm.isAdminActive(admin) -> AdminRole.DEVICE_ADMIN_ONLY
            else -> AdminRole.NONE
        }
    }

    /** The instance whose camera and capture settings cover the whole device. */
    private fun deviceWide(): DevicePolicyManager =
        if (role() == AdminRole.PROFILE_OWNER_ORG_OWNED) dpm.getParentProfileInstance(admin) else dpm

    override fun setCameraDisabled(disabled: Boolean) = guarded("camera_disabled") {
        deviceWide().setCameraDisabled(admin, disabled)
    }

    override fun setScreenCaptureDisabled(disabled: Boolean) = guarded("screen_capture_disabled") {
        deviceWide().setScreenCaptureDisabled(admin, disabled)
    }

    override fun setPackagesSuspended(packages: List<String>, suspended: Boolean): List<String> {
        val failed = guarded("suspend_packages") {
            dpm.setPackagesSuspended(admin, packages.toTypedArray(), suspended)
        }
        return failed.toList()
    }

    override fun isInstalled(pkg: String): Boolean = try {
        context.packageManager.getPackageInfo(pkg, 0)
        true
    } catch (e: PackageManager.NameNotFoundException) {
        false
    }

    override fun protectAgent(agentPackage: String) = guarded("protect_agent") {
        dpm.setUninstallBlocked(admin, agentPackage, true)
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
            // The user can no longer force-stop or clear the agent from Settings.
            dpm.setUserControlDisabledPackages(admin, listOf(agentPackage))
        }
    }

    override fun harden(): Map<String, String?> {
        val role = role()
        val wanted = when (role) {
            AdminRole.DEVICE_OWNER -> DEVICE_RESTRICTIONS
            // A profile owner's restrictions reach its profile; these are the ones that matter there.
            AdminRole.PROFILE_OWNER_ORG_OWNED -> PROFILE_RESTRICTIONS
            else -> return emptyMap()
        }
        return wanted.associate { r ->
            "hardening:$r" to try {
                dpm.addUserRestriction(admin, r)
                null
            } catch (e: SecurityException) {
                "not allowed: ${e.message}"
            }
        }
    }

    override fun grantSelfPermissions(agentPackage: String): Map<String, String?> {
        if (!role().canEnforce) return emptyMap()
        return selfPermissions().associate { perm ->
            "permission:$perm" to try {
                if (dpm.setPermissionGrantState(admin, agentPackage, perm, DevicePolicyManager.PERMISSION_GRANT_STATE_GRANTED)) null
                else "refused by the platform"
            } catch (e: SecurityException) {
                "not allowed: ${e.message}"
            } catch (e: RuntimeException) {
                // An OEM's framework failing some other way must not stop the agent's start.
                "failed: ${e.javaClass.simpleName}: ${e.message}"
            }
        }
    }

    private inline fun <T> guarded(action: String, call: () -> T): T = try {
        call()
    } catch (e: SecurityException) {
        throw EnforcementException(action, "not allowed: ${e.message}")
    } catch (e: IllegalArgumentException) {
        throw EnforcementException(action, "rejected: ${e.message}")
    }

    companion object {
        /** Device owner: no sideloading, no safe boot (which starts without the agent), no
         *  debugging, no factory reset by the holder, no second user to hide in. */
        val DEVICE_RESTRICTIONS: List<String> = buildList {
            add(UserManager.DISALLOW_INSTALL_UNKNOWN_SOURCES)
            if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) add(UserManager.DISALLOW_INSTALL_UNKNOWN_SOURCES_GLOBALLY)
            add(UserManager.DISALLOW_SAFE_BOOT)
            add(UserManager.DISALLOW_DEBUGGING_FEATURES)
            add(UserManager.DISALLOW_FACTORY_RESET)
            add(UserManager.DISALLOW_ADD_USER)
        }

        val PROFILE_RESTRICTIONS: List<String> = listOf(
            UserManager.DISALLOW_INSTALL_UNKNOWN_SOURCES,
            UserManager.DISALLOW_DEBUGGING_FEATURES,
        )

        /** What the signal sources need on the running API level. */
        fun selfPermissions(sdk: Int = Build.VERSION.SDK_INT): List<String> = buildList {
            add(Manifest.permission.ACCESS_FINE_LOCATION)
            add(Manifest.permission.ACCESS_COARSE_LOCATION)
            // Geofences are checked with the screen off: background location (API 29+).
            if (sdk >= Build.VERSION_CODES.Q) add(Manifest.permission.ACCESS_BACKGROUND_LOCATION)
            if (sdk >= Build.VERSION_CODES.S) add(Manifest.permission.BLUETOOTH_SCAN)
            if (sdk >= Build.VERSION_CODES.TIRAMISU) {
                add(Manifest.permission.READ_MEDIA_IMAGES)
                add(Manifest.permission.POST_NOTIFICATIONS)
            } else {
                add(Manifest.permission.READ_EXTERNAL_STORAGE)
            }
        }
    }
}
