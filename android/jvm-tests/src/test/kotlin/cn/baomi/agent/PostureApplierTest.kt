package cn.baomi.agent

import cn.baomi.agent.posture.AdminRole
import cn.baomi.agent.posture.DevicePolicyGateway
import cn.baomi.agent.posture.EnforcementException
import cn.baomi.agent.posture.PostureApplier
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import cn.baomi.core.SettingOutcome

/** A gateway that records calls and can be told to fail, in front of the real core. */
class RecordingGateway(var role: AdminRole = AdminRole.DEVICE_OWNER) : DevicePolicyGateway {
    val calls = mutableListOf<String>()
    var camera = false
    var capture = false
    val suspended = sortedSetOf<String>()
    var installed = setOf("com.tencent.mm", "com.tencent.mobileqq", "com.tencent.wework", "com.alibaba.android.rimet", "com.sina.weibo")
    var cameraFails = false

    override fun role() = role
    override fun setCameraDisabled(disabled: Boolean) {
        calls += "camera=$disabled"
        if (cameraFails) throw EnforcementException("camera", "not allowed: not device owner")
        camera = disabled
    }
    override fun setScreenCaptureDisabled(disabled: Boolean) {
        calls += "capture=$disabled"
        capture = disabled
    }
    override fun setPackagesSuspended(packages: List<String>, suspended: Boolean): List<String> {
        calls += "suspend=$suspended:${packages.joinToString(",")}"
        val (ok, missing) = packages.partition { it in installed }
        if (suspended) this.suspended += ok else this.suspended -= ok.toSet()
        return missing
    }
    override fun isInstalled(pkg: String) = pkg in installed
    override fun protectAgent(agentPackage: String) {
        calls += "protect=$agentPackage"
    }
    override fun harden(): Map<String, String?> = mapOf("hardening:no_safe_boot" to null)
    override fun grantSelfPermissions(agentPackage: String): Map<String, String?> = emptyMap()
}

class PostureApplierTest {
    private val office = Office()

    private fun agent() = openAgent(tempDir("baomi-applier"), JvmKeyStore()).apply {
        installTrustRoot(office.trustRoot.readBytes())
        installBundle(office.bundle(status().deviceId, "general", 1))
    }

    @Test
    fun `applies only the diff, and restores the camera when custody ends`() {
        val agent = agent()
        val gw = RecordingGateway()
        val applier = PostureApplier(agent, gw, "cn.baomi.agent.test")
        assertEquals(AdminRole.DEVICE_OWNER, applier.start())
        applier.apply(agent.posture())
        assertEquals(gw.installed.sorted(), gw.suspended.toList())
        assertFalse(gw.camera)
        gw.calls.clear()
        val d = agent.handleEventJson("""{"at":"${at()}","type":"custody_started","document":"D-1","classification":"secret"}""")
        assertTrue(d.postureChanged)
        applier.apply(d.posture)
        assertEquals(listOf("camera=true", "capture=true"), gw.calls, "only the change is applied")
        gw.calls.clear()
        val back = agent.handleEventJson("""{"at":"${at(3600)}","type":"custody_ended","document":"D-1"}""")
        applier.apply(back.posture)
        assertEquals(listOf("camera=false", "capture=false"), gw.calls)
        assertFalse(gw.camera)
        assertEquals(0, agent.violations(0uL, 10u).size)
    }

    @Test
    fun `a failed call is reported to the core and not counted as applied`() {
        val agent = agent()
        val gw = RecordingGateway(role = AdminRole.DEVICE_ADMIN_ONLY).apply { cameraFails = true }
        val applier = PostureApplier(agent, gw, "cn.baomi.agent.test")
        applier.start()
        agent.handleEventJson("""{"at":"${at()}","type":"custody_started","document":"D-1","classification":"secret"}""")
        val applied = applier.apply(agent.posture())
        assertFalse(applied.cameraDisabled, "the camera is reported as still on")
        assertTrue(applied.screenCaptureDisabled)
        val log = agent.violations(0uL, 10u).map { it.json }
        assertTrue(log.any { "enforcement_failed:role" in it }, "$log")
        assertTrue(log.any { "enforcement_failed:camera" in it }, "$log")
        // The next apply retries what did not take.
        gw.cameraFails = false
        assertTrue(applier.apply(agent.posture()).cameraDisabled)
    }

    /** The false-tamper case: a policy banning five messengers on a phone with none of them. */
    @Test
    fun `banned apps that are not installed are satisfied, and one installed later is suspended at once`() {
        val agent = agent()
        val gw = RecordingGateway().apply { installed = emptySet() }
        val applier = PostureApplier(agent, gw, "cn.baomi.agent.test")
        applier.start()
        val desired = agent.posture()
        assertEquals(5, desired.blockedPackages.size, "the baseline bans five messengers: ${desired.blockedPackages}")
        applier.apply(desired)
        applier.apply(desired)
        assertTrue(gw.calls.none { it.startsWith("suspend=true") }, "nothing to suspend: ${gw.calls}")
        assertEquals(0, agent.violations(0uL, 10u).size, "no tamper on a compliant phone")
        val report = applier.settings()
        assertTrue(report.filter { it.setting.startsWith("package:") }.all { it.state == SettingOutcome.NOT_INSTALLED }, "$report")
        assertTrue(report.all { it.state == SettingOutcome.APPLIED || it.state == SettingOutcome.NOT_INSTALLED }, "$report")

        // WeChat appears (PACKAGE_ADDED): suspended at once, still no tamper.
        gw.installed = setOf("com.tencent.mm")
        val now = applier.onPackageAdded("com.tencent.mm")
        assertEquals(listOf("com.tencent.mm"), now.blockedPackages)
        assertEquals(sortedSetOf("com.tencent.mm"), gw.suspended)
        assertEquals(0, agent.violations(0uL, 10u).size)
        assertEquals(SettingOutcome.APPLIED, applier.settings().single { it.setting == "package:com.tencent.mm" }.state)
        // An unrelated app changes nothing.
        gw.calls.clear()
        applier.onPackageAdded("com.android.calculator2")
        assertTrue(gw.calls.isEmpty(), "${gw.calls}")
    }

    @Test
    fun `an installed app that refuses suspension is a failure, reported once per attempt`() {
        val agent = agent()
        val gw = object : DevicePolicyGateway by RecordingGateway() {
            override fun setPackagesSuspended(packages: List<String>, suspended: Boolean) = packages
        }
        val applier = PostureApplier(agent, gw, "cn.baomi.agent.test")
        applier.start()
        applier.apply(agent.posture())
        val log = agent.violations(0uL, 10u).map { it.json }
        assertTrue(log.single().contains("enforcement_failed:suspend_packages"), "$log")
        assertTrue(applier.settings().filter { it.setting.startsWith("package:") }.all { it.state == SettingOutcome.FAILED })
    }

    /** An EMM owns the device: not a tamper, every setting left to the MDM and said so. */
    @Test
    fun `when the fleet's EMM applies the posture, settings are reported as by the MDM`() {
        val agent = agent()
        val gw = RecordingGateway(role = cn.baomi.agent.posture.AdminRole.NONE)
        val applier = PostureApplier(agent, gw, "cn.baomi.agent.test") { true }
        applier.start()
        applier.apply(agent.posture())
        assertEquals(cn.baomi.core.EnforcementMode.MDM, applier.mode)
        assertTrue(gw.calls.isEmpty(), "${gw.calls}")
        assertEquals(0, agent.violations(0uL, 10u).size)
        assertTrue(applier.settings().all { it.state == SettingOutcome.BY_MDM })
    }
}
