package cn.baomi.agent

import android.app.admin.DevicePolicyManager
import android.content.ComponentName
import android.content.Context
import android.content.pm.PackageInfo
import cn.baomi.agent.platform.BaomiAdminReceiver
import cn.baomi.agent.platform.DpmGateway
import cn.baomi.agent.posture.AdminRole
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.robolectric.RobolectricTestRunner
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.annotation.Config

/** The real DevicePolicyManager gateway against Robolectric's ShadowDevicePolicyManager. */
@RunWith(RobolectricTestRunner::class)
@Config(sdk = [34], manifest = Config.NONE)
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
        assertEquals(listOf(context.packageName), dpm.getUserControlDisabledPackages(admin))
    }
}
