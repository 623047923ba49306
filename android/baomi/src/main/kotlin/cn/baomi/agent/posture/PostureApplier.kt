package cn.baomi.agent.posture

import cn.baomi.core.BaomiAgent
import cn.baomi.core.PostureState
import cn.baomi.core.postureChange

/**
 * Applies the core's desired posture as diffs (computed by the core: `postureChange`), and
 * reports every failed call back to the core, where it becomes a tamper violation the officer
 * sees. Holds no policy logic: it never decides what to block, only carries it out.
 */
class PostureApplier(
    private val agent: BaomiAgent,
    private val gateway: DevicePolicyGateway,
    private val agentPackage: String,
) {
    /** What was actually applied (what the platform did, not what was asked). */
    var applied: PostureState = PostureState(false, false, emptyList())
        private set

    /** Checks the role, reports it if it cannot enforce, and protects the agent. */
    fun start(): AdminRole {
        val role = gateway.role()
        if (!role.canEnforce) {
            agent.reportEnforcementFailure("role", "agent is $role, not device owner or profile owner of an organisation-owned device: posture cannot be enforced")
        } else {
            attempt("protect_agent") { gateway.protectAgent(agentPackage) }
        }
        return role
    }

    /** Moves the device to [desired]. Returns the posture now applied. */
    fun apply(desired: PostureState): PostureState {
        val change = postureChange(applied, desired)
        var camera = applied.cameraDisabled
        var capture = applied.screenCaptureDisabled
        val blocked = applied.blockedPackages.toMutableSet()
        change.cameraDisabled?.let { want ->
            if (attempt("camera") { gateway.setCameraDisabled(want) }) camera = want
        }
        change.screenCaptureDisabled?.let { want ->
            if (attempt("screen_capture") { gateway.setScreenCaptureDisabled(want) }) capture = want
        }
        if (change.block.isNotEmpty()) {
            attempt("suspend_packages") {
                val failed = gateway.setPackagesSuspended(change.block, true)
                blocked.addAll(change.block - failed.toSet())
                // A banned app that is not installed needs no suspension; anything else is a failure.
                if (failed.isNotEmpty()) {
                    agent.reportEnforcementFailure("suspend_packages", "could not suspend ${failed.joinToString()}")
                }
            }
        }
        if (change.unblock.isNotEmpty()) {
            attempt("unsuspend_packages") {
                val failed = gateway.setPackagesSuspended(change.unblock, false)
                blocked.removeAll(change.unblock.toSet() - failed.toSet())
            }
        }
        applied = PostureState(camera, capture, blocked.sorted())
        return applied
    }

    private fun attempt(action: String, call: () -> Unit): Boolean = try {
        call()
        true
    } catch (e: Exception) {
        agent.reportEnforcementFailure(action, e.message ?: e.javaClass.simpleName)
        false
    }
}
