package cn.baomi.agent.posture

/**
 * The DevicePolicyManager calls the adapter makes, behind a project-owned interface: the
 * Android implementation is [cn.baomi.agent.platform.DpmGateway]; Robolectric shadows most of
 * it, and this seam covers what it does not.
 */
interface DevicePolicyGateway {
    /** What this app is allowed to do. */
    fun role(): AdminRole

    fun setCameraDisabled(disabled: Boolean)

    fun setScreenCaptureDisabled(disabled: Boolean)

    /** Returns the packages that could not be (un)suspended (not installed, protected). */
    fun setPackagesSuspended(packages: List<String>, suspended: Boolean): List<String>

    /** Keeps the agent itself from being uninstalled or force-stopped by the user. */
    fun protectAgent(agentPackage: String)
}

enum class AdminRole {
    /** Device owner: every call works. */
    DEVICE_OWNER,

    /** Profile owner of an organisation-owned work profile: camera and capture work. */
    PROFILE_OWNER_ORG_OWNED,

    /** A plain device admin cannot disable the camera since Android 10. */
    DEVICE_ADMIN_ONLY,

    NONE,
    ;

    val canEnforce: Boolean get() = this == DEVICE_OWNER || this == PROFILE_OWNER_ORG_OWNED
}

/** A gateway call that failed: reported to the core as an enforcement failure. */
class EnforcementException(val action: String, message: String) : Exception(message)
