package cn.baomi.agent.robolectric

import android.app.admin.DevicePolicyManager
import android.content.ComponentName
import android.os.Build
import org.junit.runners.model.FrameworkMethod
import org.robolectric.RobolectricTestRunner
import org.robolectric.annotation.Implementation
import org.robolectric.annotation.Implements
import org.robolectric.internal.bytecode.InstrumentationConfiguration
import org.robolectric.shadow.api.Shadow
import org.robolectric.shadows.ShadowDevicePolicyManager

/**
 * Robolectric with the native side loaded once per JVM: the generated bindings (JNA) and the
 * JNI fast path stay in the system class loader, so the three SDK sandboxes (26, 30, 34)
 * share one copy of `libbaomi_ffi.so` instead of each trying to load it again.
 */
class BaomiRobolectricRunner(klass: Class<*>) : RobolectricTestRunner(klass) {
    override fun createClassLoaderConfig(method: FrameworkMethod): InstrumentationConfiguration =
        InstrumentationConfiguration.Builder(super.createClassLoaderConfig(method))
            .doNotAcquirePackage("com.sun.jna")
            .doNotAcquirePackage("cn.baomi.core")
            .doNotAcquireClass("cn.baomi.agent.FastPath")
            .doNotAcquireClass("cn.baomi.agent.FastPath\$Result")
            .build()
}

/**
 * What Robolectric 4.17's ShadowDevicePolicyManager leaves as silent no-ops (screen capture,
 * user-control-disabled packages) and the parent-profile instance of a company-owned work
 * profile, kept the way the platform keeps them: per instance, owner-only.
 */
@Implements(DevicePolicyManager::class)
class ShadowBaomiDpm : ShadowDevicePolicyManager() {
    private var screenCaptureDisabled = false
    private var cameraDisabled = false
    private var userControlDisabled: List<String> = emptyList()
    private var parent: DevicePolicyManager? = null

    /** Per instance (4.17 keeps one value for every instance, parent or not). */
    @Implementation
    override fun setCameraDisabled(admin: ComponentName, disabled: Boolean) {
        if (!isAdminActive(admin)) throw SecurityException("$admin is not an active device admin")
        cameraDisabled = disabled
    }

    @Implementation
    override fun getCameraDisabled(admin: ComponentName?): Boolean = cameraDisabled

    @Implementation
    protected fun setScreenCaptureDisabled(admin: ComponentName, disabled: Boolean) {
        screenCaptureDisabled = disabled
    }

    @Implementation
    protected fun getScreenCaptureDisabled(admin: ComponentName?): Boolean = screenCaptureDisabled

    @Implementation(minSdk = Build.VERSION_CODES.R)
    protected fun setUserControlDisabledPackages(admin: ComponentName, packages: List<String>) {
        userControlDisabled = packages.toList()
    }

    @Implementation(minSdk = Build.VERSION_CODES.R)
    protected fun getUserControlDisabledPackages(admin: ComponentName): List<String> = userControlDisabled

    /** The parent instance: its own camera and capture state, as on a phone. */
    @Implementation
    protected fun getParentProfileInstance(admin: ComponentName): DevicePolicyManager {
        if (!isProfileOwnerApp(admin.packageName)) throw SecurityException("not a profile owner")
        return parent ?: Shadow.newInstanceOf(DevicePolicyManager::class.java).also {
            Shadow.extract<ShadowBaomiDpm>(it).apply {
                setActiveAdmin(admin)
                setProfileOwner(admin)
            }
            parent = it
        }
    }
}
