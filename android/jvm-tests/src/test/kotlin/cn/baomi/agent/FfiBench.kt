package cn.baomi.agent

import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test

/**
 * Per-call cost of one event through the uniffi binding (JNA) and through the JNI fast path,
 * on the host JVM. A benchmark, not a test: it asserts nothing about time and runs only with
 * `mvn test -Dbaomi.bench=true -Dtest=FfiBench` (docs/BENCHMARKS.md).
 */
class FfiBench {
    @Test
    fun perCallCost() {
        assumeTrue(System.getProperty("baomi.bench") == "true", "benchmark: run with -Dbaomi.bench=true")
        FastPath.load(Paths.ffiLib)
        val office = Office()
        val agent = openAgent(tempDir("baomi-bench"), JvmKeyStore())
        agent.installTrustRoot(office.trustRoot.readBytes())
        agent.installBundle(office.bundle(agent.status().deviceId, "general", 1))
        val h = agent.fastPathHandle().toLong()
        val atMs = System.currentTimeMillis()
        // An allowed launch: evaluation only, nothing written to the store.
        val json = """{"at":"${at()}","type":"app_launched","package":"com.android.calculator2"}"""
        val uuid = java.util.UUID.fromString("0b7c6a2e-0000-4000-8000-000000000001") // not a zone beacon

        val open = cn.baomi.core.PostureState(false, false, emptyList())
        val cases = linkedMapOf<String, () -> Unit>(
            "uniffi (JNA) handleEventJson" to { agent.handleEventJson(json) },
            "uniffi (JNA) posture()" to { agent.posture() },
            // Where the uniffi cost goes (issue 11): a free function with two small records, the
            // call-status structure every uniffi call allocates, and the by-value buffer.
            "uniffi (JNA) postureChange (free fn)" to { cn.baomi.core.postureChange(open, open) },
            "JNA new UniffiRustCallStatus()" to { cn.baomi.core.UniffiRustCallStatus() },
            "JNA new RustBuffer.ByValue()" to { cn.baomi.core.RustBuffer.ByValue() },
            "JNI packageEvent" to { FastPath.packageEvent(h, atMs, FastPath.LAUNCHED, "com.android.calculator2") },
            "JNI beacon" to { FastPath.beacon(h, atMs, uuid.mostSignificantBits, uuid.leastSignificantBits, 1, 1, -70) },
        )
        val n = 100_000
        for ((name, call) in cases) {
            repeat(20_000) { call() }
            val rounds = (1..5).map {
                val t0 = System.nanoTime()
                repeat(n) { call() }
                (System.nanoTime() - t0).toDouble() / n
            }.sorted()
            println("FFI %-32s median %8.0f ns/call (rounds: %s)".format(name, rounds[2], rounds.joinToString { "%.0f".format(it) }))
        }
    }
}
