package cn.baomi.agent

import cn.baomi.core.BaomiException
import cn.baomi.core.PlatformKind
import cn.baomi.core.VerdictKind
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.io.File

/** The generated Kotlin bindings over the host-built library: what the Android app calls. */
class AgentTest {
    private val office = Office()

    @Test
    fun `a signed bundle installs and the published leak patterns are decided as expected`() {
        val index = File(Paths.repo, "tests/scenarios/index.json").readText()
        val scenarios = Regex("\"name\":\\s*\"([^\"]+)\"[^}]*\"clearance\":\\s*\"([^\"]+)\"[^}]*\"platform\":\\s*\"([^\"]+)\"")
            .findAll(index).map { Triple(it.groupValues[1], it.groupValues[2], it.groupValues[3]) }.toList()
        assertTrue(scenarios.size >= 7, "scenarios: $scenarios")
        for ((name, clearance, platform) in scenarios) {
            val kind = if (platform == "ios") PlatformKind.IOS else PlatformKind.ANDROID
            val agent = openAgent(tempDir("baomi-$name"), JvmKeyStore(), platform = kind)
            agent.installTrustRoot(office.trustRoot.readBytes())
            val info = agent.installBundle(office.bundle(agent.status().deviceId, clearance, 1))
            assertEquals("baseline", info.policyId)
            val events = shiftedToNow(File(Paths.repo, "tests/scenarios/$name.events.jsonl").readLines().filter { it.isNotBlank() })
            val expected = File(Paths.repo, "tests/scenarios/$name.expect.jsonl").readLines().filter { it.isNotBlank() }
            assertEquals(events.size, expected.size, name)
            for ((i, line) in events.withIndex()) {
                val d = agent.handleEventJson(line)
                val want = expected[i]
                val ctx = "$name event ${i + 1}: $line -> $d"
                assertEquals(field(want, "verdict"), d.verdict.name.lowercase(), ctx)
                assertEquals(field(want, "violation").toBoolean(), d.violation, ctx)
                assertEquals(field(want, "camera_disabled").toBoolean(), d.posture.cameraDisabled, ctx)
                assertEquals(field(want, "screen_capture_disabled").toBoolean(), d.posture.screenCaptureDisabled, ctx)
                val messengersBlocked = want.contains("\"messengers\"")
                val wechat = if (kind == PlatformKind.IOS) "com.tencent.xin" else "com.tencent.mm"
                assertEquals(messengersBlocked, d.posture.blockedPackages.contains(wechat), ctx)
            }
            // Every violation went into the encrypted log, and the chain verifies.
            val violations = agent.violations(0uL, 1000u)
            assertEquals(expected.count { field(it, "violation") == "true" }, violations.size, name)
            assertEquals(violations.size.toULong(), agent.verifyLog().records)
        }
    }

    @Test
    fun `a tampered or rolled back bundle is refused with an actionable error`() {
        val agent = openAgent(tempDir("baomi-refuse"), JvmKeyStore())
        assertThrows<BaomiException.NoTrustRoot> { agent.installBundle(office.bundle("x", "general", 1)) }
        agent.installTrustRoot(office.trustRoot.readBytes())
        val good = office.bundle(agent.status().deviceId, "general", 2)
        val tampered = String(good).replaceFirst("\"payload\": \"ey", "\"payload\": \"ez").toByteArray()
        val e = assertThrows<BaomiException.Refused> { agent.installBundle(tampered) }
        assertTrue(e.reason.contains("signature") || e.reason.contains("payload"), e.reason)
        agent.installBundle(good)
        val rollback = assertThrows<BaomiException.Refused> { agent.installBundle(office.bundle(agent.status().deviceId, "general", 1)) }
        assertTrue(rollback.reason.contains("version"), rollback.reason)
        assertEquals(2uL, agent.status().policyVersion)
    }

    @Test
    fun `an enforcement failure reported by the platform trips the tamper rule and is recorded`() {
        val agent = openAgent(tempDir("baomi-tamper"), JvmKeyStore())
        agent.installTrustRoot(office.trustRoot.readBytes())
        agent.installBundle(office.bundle(agent.status().deviceId, "general", 1))
        val d = agent.reportEnforcementFailure("camera", "not device owner")
        assertEquals(VerdictKind.DENY, d.verdict)
        assertTrue(d.violation)
        assertEquals(listOf("baomi.tamper"), d.rules)
        val logged = agent.violations(0uL, 10u).single()
        assertTrue(logged.json.contains("enforcement_failed:camera"), logged.json)
    }

    @Test
    fun `the Kotlin key store wraps the data key, state survives a reopen, and another key is refused`() {
        val dir = tempDir("baomi-keys")
        val keys = JvmKeyStore()
        openAgent(dir, keys).use {
            it.installTrustRoot(office.trustRoot.readBytes())
            it.installBundle(office.bundle(it.status().deviceId, "important", 1))
            it.handleEventJson("""{"at":"${at()}","type":"app_launched","package":"com.tencent.mm"}""")
        }
        assertTrue(keys.calls >= 1)
        val again = openAgent(dir, keys)
        assertEquals(1uL, again.status().policyVersion)
        assertEquals(1, again.violations(0uL, 10u).size)
        assertEquals(1uL, again.verifyLog().records)
        // One agent per store: a second open while this one lives is refused (two writers
        // interleaved records and broke the chain), and works once it is destroyed.
        val twice = assertThrows<BaomiException.Store> { openAgent(dir, keys) }
        assertTrue(twice.reason.contains("another agent"), twice.reason)
        again.destroy()
        val e = assertThrows<BaomiException.Store> { openAgent(dir, JvmKeyStore()) }
        assertTrue(e.reason.contains("data key does not match"), e.reason)
        // Nothing was harmed by the wrong key.
        assertEquals(1uL, openAgent(dir, keys).use { it.verifyLog().records })
    }

    @Test
    fun `the JNI fast path decides like the uniffi path and returns posture bits`() {
        FastPath.load(Paths.ffiLib)
        val agent = openAgent(tempDir("baomi-jni"), JvmKeyStore())
        agent.installTrustRoot(office.trustRoot.readBytes())
        agent.installBundle(office.bundle(agent.status().deviceId, "general", 1))
        val h = agent.fastPathHandle().toLong()
        val at = System.currentTimeMillis()
        val launch = FastPath.decode(FastPath.packageEvent(h, at, FastPath.LAUNCHED, "com.tencent.mm"))!!
        assertEquals(1, launch.verdict)
        assertTrue(launch.violation)
        val calc = FastPath.decode(FastPath.packageEvent(h, at + 1, FastPath.LAUNCHED, "com.android.calculator2"))!!
        assertEquals(0, calc.verdict)
        assertFalse(calc.violation)
        // A beacon of the secrets office (policies/baseline.json): camera off, posture changed.
        val uuid = java.util.UUID.fromString("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
        val inZone = FastPath.decode(FastPath.beacon(h, at + 2, uuid.mostSignificantBits, uuid.leastSignificantBits, 100, 1, -60))!!
        assertTrue(inZone.postureChanged && inZone.cameraDisabled && inZone.screenCaptureDisabled, "$inZone")
        assertTrue(agent.posture().cameraDisabled)
        assertEquals(-1L, FastPath.packageEvent(h + 1000, at, FastPath.LAUNCHED, "x"))
        agent.releaseFastPath(h.toULong())
        assertEquals(-1L, FastPath.packageEvent(h, at, FastPath.LAUNCHED, "x"))
        // A handle never outlives its agent: once destroyed, an old handle records nothing.
        val h2 = agent.fastPathHandle().toLong()
        assertEquals(h2, agent.fastPathHandle().toLong(), "one handle per agent")
        // A null package name (a Java caller) is a failure, never "allow".
        val nullPkg = FastPath::class.java.getMethod(
            "packageEvent", Long::class.javaPrimitiveType, Long::class.javaPrimitiveType,
            Int::class.javaPrimitiveType, String::class.java,
        ).invoke(null, h2, at + 3, FastPath.LAUNCHED, null) as Long
        assertEquals(-1L, nullPkg)
        agent.destroy()
        assertEquals(-1L, FastPath.packageEvent(h2, at + 4, FastPath.LAUNCHED, "com.tencent.mm"))
    }
}

/** A top-level scalar field of a flat JSON object (the expectation files are one line each). */
fun field(json: String, name: String): String =
    Regex("\"$name\":\\s*(\"([^\"]*)\"|true|false|[0-9-]+)").find(json)?.let { m ->
        m.groupValues[2].ifEmpty { m.groupValues[1] }
    } ?: error("no $name in $json")
