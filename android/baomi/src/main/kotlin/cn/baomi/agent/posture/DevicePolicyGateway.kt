package cn.baomi.agent.posture

import cn.baomi.core.EnforcementMode

/**
 * The DevicePolicyManager calls the adapter makes, behind a project-owned interface: the
 * Android implementation is [cn.baomi.agent.platform.DpmGateway]; Robolectric shadows most of
 * it, and this seam covers what it does not.
 */
interface DevicePolicyGateway {
    /** What this app is allowed to do. */
    fun role(): AdminRole

    /** Device-wide (the parent profile's on a company-owned work profile). */
    fun setCameraDisabled(disabled: Boolean)

    /** Device-wide (the parent profile's on a company-owned work profile). */
    fun setScreenCaptureDisabled(disabled: Boolean)

    /** Returns the packages that could not be (un)suspended (not installed, protected). */
    fun setPackagesSuspended(packages: List<String>, suspended: Boolean): List<String>

    /** Whether [pkg] is installed for this user (a banned app that is not needs nothing). */
    fun isInstalled(pkg: String): Boolean

    /** Keeps the agent itself from being uninstalled or force-stopped by the user. */
    fun protectAgent(agentPackage: String)

    /**
     * Sets the hardening restrictions the role allows (unknown sources, safe boot, debugging,
     * factory reset, add user). Returns each restriction with `null` when set, or why not.
     */
    fun harden(): Map<String, String?>

    /**
     * Grants the agent the runtime permissions its signal sources need (location, background
     * location, Bluetooth scan, images), as the DPC may. Returns each with `null` or why not.
     */
    fun grantSelfPermissions(agentPackage: String): Map<String, String?>
}

/** What the agent's admin role lets it do; [mode] is what the core and the officer see. */
enum class AdminRole(val mode: EnforcementMode) {
    /** Device owner of a fully managed phone: every call works. */
    DEVICE_OWNER(EnforcementMode.DEVICE_OWNER),

    /**
     * Profile owner of a company-owned work profile (API 30+): camera and capture through the
     * parent profile instance; personal apps cannot be suspended one by one.
     */
    PROFILE_OWNER_ORG_OWNED(EnforcementMode.PROFILE_OWNER_ORG_OWNED),

    /** Profile owner on a personal device: its calls reach the work profile only. */
    PROFILE_OWNER_PERSONAL(EnforcementMode.PROFILE_OWNER_PERSONAL),

    /** A plain device admin cannot disable the camera since Android 10. */
    DEVICE_ADMIN_ONLY(EnforcementMode.DEVICE_ADMIN),

    NONE(EnforcementMode.UNMANAGED),
    ;

    /** Camera and capture reach the whole device. */
    val canEnforce: Boolean get() = this == DEVICE_OWNER || this == PROFILE_OWNER_ORG_OWNED

    /** Apps the holder uses can be suspended one by one. */
    val canSuspendApps: Boolean get() = this == DEVICE_OWNER
}

/** A gateway call that failed: reported to the core as an enforcement failure. */
class EnforcementException(val action: String, message: String) : Exception(message)
