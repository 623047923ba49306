package cn.baomi.agent.robolectric

import android.app.admin.DevicePolicyManager
import android.content.ComponentName
import android.content.Context
import android.content.pm.PackageInfo
import android.os.Build
import android.os.UserManager
import cn.baomi.agent.platform.BaomiAdminReceiver
import cn.baomi.agent.platform.DpmGateway
import cn.baomi.agent.posture.AdminRole
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.annotation.Config

/**
 * The real DevicePolicyManager gateway against Robolectric's DevicePolicyManager, on the
 * frameworks of API 26, 30 and 34: a call newer than the running level fails here with
 * NoSuchMethodError, so every guard is exercised.
 */
@RunWith(BaomiRobolectricRunner::class)
@Config(sdk = [26, 30, 34], manifest = Config.NONE, shadows = [ShadowBaomiDpm::class])
class DpmGatewayRobolectricTest {
    private val context: Context = RuntimeEnvironment.getApplication()
    private val admin = ComponentName(context, BaomiAdminReceiver::class.java)
    private val dpm = context.getSystemService(DevicePolicyManager::class.java)

    private fun install(vararg packages: String) {
        val pm = shadowOf(context.packageManager)
        for (p in packages) pm.installPackage(PackageInfo().apply { packageName = p })
    }

    @Test
    fun withoutOwnershipTheRoleSaysSo() {
        assertEquals(AdminRole.NONE, DpmGateway(context, admin).role())
        shadowOf(dpm).setActiveAdmin(admin)
        assertEquals(AdminRole.DEVICE_ADMIN_ONLY, DpmGateway(context, admin).role())
        assertFalse(DpmGateway(context, admin).role().canEnforce)
        assertTrue(DpmGateway(context, admin).harden().isEmpty())
    }

    @Test
    fun asDeviceOwnerTheCameraAndCaptureAreDisabledAndRestored() {
        shadowOf(dpm).setDeviceOwner(admin)
        val gw = DpmGateway(context, admin)
        assertEquals(AdminRole.DEVICE_OWNER, gw.role())
        gw.setCameraDisabled(true)
        gw.setScreenCaptureDisabled(true)
        assertTrue(dpm.getCameraDisabled(admin))
        assertTrue(dpm.getScreenCaptureDisabled(admin))
        gw.setCameraDisabled(false)
        assertFalse(dpm.getCameraDisabled(admin))
    }

    @Test
    fun messengersAreSuspendedAndRestoredAndAMissingOneIsReported() {
        shadowOf(dpm).setDeviceOwner(admin)
        install("com.tencent.mm", "com.tencent.mobileqq")
        val gw = DpmGateway(context, admin)
        assertTrue(gw.isInstalled("com.tencent.mm"))
        assertFalse(gw.isInstalled("com.sina.weibo"))
        val failed = gw.setPackagesSuspended(listOf("com.tencent.mm", "com.tencent.mobileqq", "com.sina.weibo"), true)
        assertEquals(listOf("com.sina.weibo"), failed)
        assertTrue(dpm.isPackageSuspended(admin, "com.tencent.mm"))
        assertTrue(dpm.isPackageSuspended(admin, "com.tencent.mobileqq"))
        gw.setPackagesSuspended(listOf("com.tencent.mm"), false)
        assertFalse(dpm.isPackageSuspended(admin, "com.tencent.mm"))
    }

    @Test
    fun theAgentProtectsItself() {
        shadowOf(dpm).setDeviceOwner(admin)
        DpmGateway(context, admin).protectAgent(context.packageName)
        assertTrue(dpm.isUninstallBlocked(admin, context.packageName))
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.R) {
            assertEquals(listOf(context.packageName), dpm.getUserControlDisabledPackages(admin))
        }
    }

    @Test
    fun theDeviceOwnerHardensTheDevice() {
        shadowOf(dpm).setDeviceOwner(admin)
        val result = DpmGateway(context, admin).harden()
        assertTrue("$result", result.values.all { it == null })
        val um = context.getSystemService(UserManager::class.java)
        for (r in listOf(UserManager.DISALLOW_SAFE_BOOT, UserManager.DISALLOW_FACTORY_RESET, UserManager.DISALLOW_ADD_USER,
            UserManager.DISALLOW_DEBUGGING_FEATURES, UserManager.DISALLOW_INSTALL_UNKNOWN_SOURCES)) {
            assertTrue(r, um.hasUserRestriction(r))
        }
        assertEquals(Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q, "hardening:${UserManager.DISALLOW_INSTALL_UNKNOWN_SOURCES_GLOBALLY}" in result)
    }

    @Test
    fun theDeviceOwnerGrantsItsSignalPermissionsForTheRunningLevel() {
        shadowOf(dpm).setDeviceOwner(admin)
        // As the manifest declares them (a DPC can grant only what its manifest requests).
        shadowOf(context.packageManager).installPackage(PackageInfo().apply {
            packageName = context.packageName
            requestedPermissions = DpmGateway.selfPermissions().toTypedArray()
        })
        val granted = DpmGateway(context, admin).grantSelfPermissions(context.packageName)
        assertTrue("$granted", granted.values.all { it == null })
        val perms = granted.keys.map { it.removePrefix("permission:") }
        assertTrue(android.Manifest.permission.ACCESS_FINE_LOCATION in perms)
        assertEquals(Build.VERSION.SDK_INT >= 29, android.Manifest.permission.ACCESS_BACKGROUND_LOCATION in perms)
        assertEquals(Build.VERSION.SDK_INT >= 31, android.Manifest.permission.BLUETOOTH_SCAN in perms)
        for (p in perms) {
            assertEquals(p, DevicePolicyManager.PERMISSION_GRANT_STATE_GRANTED, dpm.getPermissionGrantState(admin, context.packageName, p))
        }
    }

    /** A company-owned work profile (API 30+): camera and capture go to the parent instance. */
    @Test
    fun aCompanyOwnedWorkProfileEnforcesThroughTheParentInstance() {
        assumeTrue(Build.VERSION.SDK_INT >= Build.VERSION_CODES.R)
        shadowOf(dpm).setProfileOwner(admin)
        shadowOf(dpm).setOrganizationOwnedDeviceWithManagedProfile(true)
        val gw = DpmGateway(context, admin)
        assertEquals(AdminRole.PROFILE_OWNER_ORG_OWNED, gw.role())
        gw.setCameraDisabled(true)
        gw.setScreenCaptureDisabled(true)
        val parent = dpm.getParentProfileInstance(admin)
        assertTrue("the parent (personal side) has the camera off", parent.getCameraDisabled(admin))
        assertTrue(parent.getScreenCaptureDisabled(admin))
        assertFalse("not just the work profile", dpm.getCameraDisabled(admin))
        assertFalse(gw.role().canSuspendApps)
    }

    /** A profile owner on a personal phone reaches its profile only: it says it cannot enforce. */
    @Test
    fun aProfileOwnerOnAPersonalPhoneCannotEnforce() {
        shadowOf(dpm).setProfileOwner(admin)
        val role = DpmGateway(context, admin).role()
        assertEquals(AdminRole.PROFILE_OWNER_PERSONAL, role)
        assertFalse(role.canEnforce)
        assertNull(DpmGateway(context, admin).harden()["hardening:${UserManager.DISALLOW_SAFE_BOOT}"])
    }
}
