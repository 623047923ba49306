package cn.baomi.agent.platform

import android.app.admin.DevicePolicyManager
import android.content.ComponentName
import android.content.Context
import android.os.Build
import cn.baomi.agent.posture.AdminRole
import cn.baomi.agent.posture.DevicePolicyGateway
import cn.baomi.agent.posture.EnforcementException

/**
 * [DevicePolicyGateway] on DevicePolicyManager, as device owner (or profile owner of an
 * organisation-owned work profile). Uses `setCameraDisabled`, not the hidden DISALLOW_CAMERA
 * restriction; a plain device admin cannot disable the camera since Android 10 (API 29).
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
            dpm.isProfileOwnerApp(pkg) &&
                (Build.VERSION.SDK_INT < Build.VERSION_CODES.R || dpm.isOrganizationOwnedDeviceWithManagedProfile) ->
                AdminRole.PROFILE_OWNER_ORG_OWNED
            dpm.isAdminActive(admin) -> AdminRole.DEVICE_ADMIN_ONLY
            else -> AdminRole.NONE
        }
    }

    override fun setCameraDisabled(disabled: Boolean) = guarded("camera") {
        dpm.setCameraDisabled(admin, disabled)
    }

    override fun setScreenCaptureDisabled(disabled: Boolean) = guarded("screen_capture") {
        dpm.setScreenCaptureDisabled(admin, disabled)
    }

    override fun setPackagesSuspended(packages: List<String>, suspended: Boolean): List<String> {
        // Returns the packages that could not be changed (not installed, or protected).
        val failed = guarded("suspend_packages") {
            dpm.setPackagesSuspended(admin, packages.toTypedArray(), suspended)
        }
        return failed.toList()
    }

    override fun protectAgent(agentPackage: String) = guarded("protect_agent") {
        dpm.setUninstallBlocked(admin, agentPackage, true)
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
            // The user can no longer force-stop or clear the agent from Settings.
            dpm.setUserControlDisabledPackages(admin, listOf(agentPackage))
        }
    }

    private inline fun <T> guarded(action: String, call: () -> T): T = try {
        call()
    } catch (e: SecurityException) {
        throw EnforcementException(action, "not allowed: ${e.message}")
    } catch (e: IllegalArgumentException) {
        throw EnforcementException(action, "rejected: ${e.message}")
    }
}
