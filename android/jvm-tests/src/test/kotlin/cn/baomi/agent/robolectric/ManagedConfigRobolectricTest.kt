package cn.baomi.agent.robolectric

import android.content.Context
import android.content.RestrictionsManager
import android.os.Bundle
import cn.baomi.agent.JvmKeyStore
import cn.baomi.agent.Office
import cn.baomi.agent.openAgent
import cn.baomi.agent.platform.ManagedConfigIntake
import cn.baomi.agent.tempDir
import cn.baomi.core.IntakeResult
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.annotation.Config

/**
 * Managed configuration as an MDM delivers it (the whole bundle again on every change), read
 * through RestrictionsManager on API 26, 30 and 34 and handed to the core in one call.
 */
@RunWith(BaomiRobolectricRunner::class)
@Config(sdk = [26, 30, 34], manifest = Config.NONE)
class ManagedConfigRobolectricTest {
    private val context: Context = RuntimeEnvironment.getApplication()

    private fun deliver(vararg kv: Pair<String, String>) =
        shadowOf(context.getSystemService(RestrictionsManager::class.java))
            .setApplicationRestrictions(Bundle().apply { kv.forEach { (k, v) -> putString(k, v) } })

    @Test
    fun theSameConfigurationAgainIsNoRefusalAndANewerBundleInstalls() {
        val office = Office()
        val agent = openAgent(tempDir("baomi-managed"), JvmKeyStore())
        var installs = 0
        val intake = ManagedConfigIntake(context, agent) { installs++ }
        val root = office.trustRoot.readText()
        // Before the root: a bundle alone is an outcome, not a crash (NoTrustRoot used to escape).
        deliver(ManagedConfigIntake.KEY_BUNDLE to String(office.bundle(agent.status().deviceId, "general", 1)))
        val early = intake.read()!!
        assertTrue("$early", early.bundle is IntakeResult.Refused)

        deliver(ManagedConfigIntake.KEY_TRUST_ROOT to root, ManagedConfigIntake.KEY_BUNDLE to String(office.bundle(agent.status().deviceId, "general", 1)))
        val first = intake.read()!!
        assertEquals(IntakeResult.Installed(1uL), first.trustRoot)
        assertEquals(IntakeResult.Installed(1uL), first.bundle)
        assertEquals(1, installs)
        // Every later change re-delivers the same root and bundle: nothing refused, nothing recorded.
        repeat(3) {
            val again = intake.read()!!
            assertEquals(IntakeResult.AlreadyInstalled(1uL), again.trustRoot)
            assertFalse(again.changed)
        }
        assertEquals(0, agent.violations(0uL, 10u).size)
        deliver(ManagedConfigIntake.KEY_TRUST_ROOT to root, ManagedConfigIntake.KEY_BUNDLE to String(office.bundle(agent.status().deviceId, "general", 2)))
        assertEquals(IntakeResult.Installed(2uL), intake.read()!!.bundle)
        assertEquals(2uL, agent.status().policyVersion)
        // A tampered bundle: refused and recorded, version 2 stays.
        val tampered = String(office.bundle(agent.status().deviceId, "general", 3)).replaceFirst("\"payload\": \"ey", "\"payload\": \"ez")
        deliver(ManagedConfigIntake.KEY_TRUST_ROOT to root, ManagedConfigIntake.KEY_BUNDLE to tampered)
        val refused = intake.read()!!.bundle
        assertTrue("$refused", refused is IntakeResult.Refused && refused.recorded)
        assertEquals(2uL, agent.status().policyVersion)
        assertTrue(agent.violations(0uL, 10u).single().json.contains("managed_config_refused"))
    }
}
