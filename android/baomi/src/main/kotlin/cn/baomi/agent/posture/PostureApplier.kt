package cn.baomi.agent.posture

import cn.baomi.core.AppliedSettingInfo
import cn.baomi.core.BaomiAgent
import cn.baomi.core.PostureState
import cn.baomi.core.SettingOutcome
import cn.baomi.core.postureChange

/**
 * Applies the core's desired posture as diffs (computed by the core: `postureChange`), reports
 * every failed call back to the core (a tamper violation the officer sees), and reports what
 * it applied setting by setting (`reportApplied`, sent at the next check-in). Holds no policy
 * logic: it never decides what to block, only carries it out.
 *
 * A banned app that is not installed is satisfied, like Android Management API's `BLOCKED`: it
 * is not suspended (Android cannot suspend what is not there) and not a failure; it is
 * suspended the moment it appears ([onPackageAdded]).
 */
class PostureApplier(
    private val agent: BaomiAgent,
    private val gateway: DevicePolicyGateway,
    private val agentPackage: String,
    /**
     * The fleet's EMM owns the device and applies the posture itself (managed configuration
     * `enforcement = mdm`): the agent then reports every setting as left to the MDM, and the
     * compliance server's MDM connector turns the posture into the EMM's commands.
     */
    private val mdmApplies: () -> Boolean = { false },
) {
    /** What was actually applied (what the platform did, not what was asked). */
    var applied: PostureState = PostureState(false, false, emptyList())
        private set

    /** The last posture asked for. */
    var desired: PostureState = PostureState(false, false, emptyList())
        private set

    var role: AdminRole = AdminRole.NONE
        private set

    private var hardening: Map<String, String?> = emptyMap()
    private var permissions: Map<String, String?> = emptyMap()
    private val failed = mutableMapOf<String, String>()

    /** Who applies the posture, as reported. */
    val mode get() = if (byMdm) cn.baomi.core.EnforcementMode.MDM else role.mode

    private val byMdm get() = !role.canEnforce && mdmApplies()

    /** Checks the role, reports it if it cannot enforce, protects the agent and hardens. */
    fun start(): AdminRole {
        role = gateway.role()
        if (byMdm) {
            // Not a failure: the EMM applies the posture; the server checks it did.
        } else if (!role.canEnforce) {
            agent.reportEnforcementFailure("role", "agent is ${role.mode}: camera and capture cannot be enforced on the whole device")
        } else {
            attempt("protect_agent") { gateway.protectAgent(agentPackage) }
            hardening = gateway.harden()
            permissions = gateway.grantSelfPermissions(agentPackage)
            hardening.forEach { (name, why) -> if (why != null) agent.reportEnforcementFailure("hardening:$name", why) }
        }
        report()
        return role
    }

    /** Moves the device to [desired]. Returns the posture now applied. */
    fun apply(desired: PostureState): PostureState {
        this.desired = desired
        if (byMdm) {
            report()
            return applied
        }
        val change = postureChange(applied, desired)
        var camera = applied.cameraDisabled
        var capture = applied.screenCaptureDisabled
        val blocked = applied.blockedPackages.toMutableSet()
        change.cameraDisabled?.let { want ->
            if (attempt("camera_disabled") { gateway.setCameraDisabled(want) }) camera = want
        }
        change.screenCaptureDisabled?.let { want ->
            if (attempt("screen_capture_disabled") { gateway.setScreenCaptureDisabled(want) }) capture = want
        }
        if (change.block.isNotEmpty() && role.canSuspendApps) {
            // Not installed: satisfied, nothing to call (and no false tamper alert).
            val present = change.block.filter(gateway::isInstalled)
            if (present.isNotEmpty()) {
                attempt("suspend_packages") {
                    val refused = gateway.setPackagesSuspended(present, true)
                    blocked.addAll(present - refused.toSet())
                    // Installed, yet not suspended: that is a failure.
                    val real = refused.filter(gateway::isInstalled)
                    real.forEach { failed["package:$it"] = "suspension refused" }
                    if (real.isNotEmpty()) {
                        agent.reportEnforcementFailure("suspend_packages", "could not suspend ${real.joinToString()}")
                    }
                }
            }
        }
        if (change.unblock.isNotEmpty()) {
            attempt("unsuspend_packages") {
                val refused = gateway.setPackagesSuspended(change.unblock, false)
                blocked.removeAll(change.unblock.toSet() - refused.toSet())
            }
        }
        applied = PostureState(camera, capture, blocked.sorted())
        report()
        return applied
    }

    /** A package appeared (PACKAGE_ADDED): a banned one is suspended at once. */
    fun onPackageAdded(pkg: String): PostureState =
        if (pkg in desired.blockedPackages && pkg !in applied.blockedPackages) apply(desired) else applied

    /** What the platform did, setting by setting, to the core (and so to the officer). */
    fun settings(): List<AppliedSettingInfo> {
        val out = mutableListOf<AppliedSettingInfo>()
        if (byMdm) {
            out += AppliedSettingInfo("camera_disabled", desired.cameraDisabled, SettingOutcome.BY_MDM, null)
            out += AppliedSettingInfo("screen_capture_disabled", desired.screenCaptureDisabled, SettingOutcome.BY_MDM, null)
            desired.blockedPackages.forEach { out += AppliedSettingInfo("package:$it", true, SettingOutcome.BY_MDM, null) }
            return out
        }
        fun device(name: String, want: Boolean, have: Boolean) {
            val state = when {
                want == have -> SettingOutcome.APPLIED
                !role.canEnforce -> SettingOutcome.UNSUPPORTED
                else -> SettingOutcome.FAILED
            }
            out += AppliedSettingInfo(name, want, state, failed[name].takeIf { state != SettingOutcome.APPLIED })
        }
        device("camera_disabled", desired.cameraDisabled, applied.cameraDisabled)
        device("screen_capture_disabled", desired.screenCaptureDisabled, applied.screenCaptureDisabled)
        for (pkg in desired.blockedPackages) {
            val name = "package:$pkg"
            val state = when {
                pkg in applied.blockedPackages -> SettingOutcome.APPLIED
                !gateway.isInstalled(pkg) -> SettingOutcome.NOT_INSTALLED
                !role.canSuspendApps -> SettingOutcome.UNSUPPORTED
                else -> SettingOutcome.FAILED
            }
            out += AppliedSettingInfo(name, true, state, failed[name].takeIf { state == SettingOutcome.FAILED })
        }
        for ((name, why) in hardening + permissions) {
            out += AppliedSettingInfo(name, true, if (why == null) SettingOutcome.APPLIED else SettingOutcome.FAILED, why)
        }
        return out
    }

    /** Why the last report could not be kept (the store failed), for the status screen. */
    var reportError: String? = null
        private set

    private fun report() {
        reportError = try {
            agent.reportApplied(mode, settings())
            null
        } catch (e: Exception) {
            e.message ?: e.javaClass.simpleName
        }
    }

    private fun attempt(action: String, call: () -> Unit): Boolean = try {
        call()
        failed.remove(action)
        true
    } catch (e: Exception) {
        val why = e.message ?: e.javaClass.simpleName
        failed[action] = why
        agent.reportEnforcementFailure(action, why)
        false
    }
}
