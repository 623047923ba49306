package cn.baomi.agent

import cn.baomi.agent.net.UrlConnectionHttpClient
import cn.baomi.agent.posture.PostureApplier
import cn.baomi.core.SystemClock
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit

/**
 * The Kotlin side against a real `baomi-server` on loopback, through the Kotlin HTTP client
 * the phone uses: enrol, take the bundle, upload violations, report what was applied, and
 * receive a registry sign-out over the push channel.
 */
class ServerSyncTest {
    @Test
    fun `enrols, syncs, uploads violations and receives a custody sign-out`() {
        val office = Office()
        ServerProcess(office).use { server ->
            val http = UrlConnectionHttpClient(server.base, timeoutMs = 40_000)
            val agent = openAgent(tempDir("baomi-kotlin-sync"), JvmKeyStore(), clock = SystemClock())
            agent.installTrustRoot(office.trustRoot.readBytes())
            val device = agent.enroll(server.base, server.token(), http)
            assertEquals(agent.status().deviceId, device)

            server.admin("bundle", "publish", office.bundleFile(device, "general", 1).path)
            val first = agent.syncNow(http)
            assertEquals(1uL, first.bundleInstalled)

            // A compliant phone with no messenger installed, and one violation.
            val gw = RecordingGateway().apply { installed = emptySet() }
            val applier = PostureApplier(agent, gw, "cn.baomi.agent")
            applier.start()
            applier.apply(agent.posture())
            val d = agent.handleEventJson("""{"at":"${at()}","type":"app_launched","package":"com.tencent.mm"}""")
            assertTrue(d.violation)
            val up = agent.syncNow(http)
            assertEquals(1uL, up.uploaded)
            assertEquals(0, agent.violations(0uL, 10u).size, "deleted only on the server's receipt")
            val received = server.admin("violations")
            assertTrue(received.contains("com.tencent.mm"), received)
            val fleet = server.admin("devices")
            assertTrue(fleet.contains("\"compliant\":true") && fleet.contains("\"enforcement\":\"device_owner\""), fleet)
            assertTrue(fleet.contains("\"state\":\"not_installed\""), fleet)

            // The registry signs DOC-7 out to the holder while the phone waits on the push channel.
            val pool = Executors.newSingleThreadExecutor()
            val waiting = pool.submit<Boolean> { agent.waitForChange(http, 20_000u) }
            Thread.sleep(500)
            server.admin("custody", "post", office.custody("R-1", "test-holder", "DOC-7", "sign-out").path)
            assertTrue(waiting.get(25, TimeUnit.SECONDS), "the server answered the wait")
            pool.shutdown()
            val custody = agent.syncNow(http)
            assertEquals(1u, custody.custodyApplied)
            assertTrue(custody.posture.cameraDisabled && custody.posture.screenCaptureDisabled)
            applier.apply(custody.posture)
            assertTrue(gw.camera && gw.capture, "applied through the gateway")
        }
    }
}
