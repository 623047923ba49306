package cn.baomi.agent.robolectric

import android.app.AlarmManager
import android.app.NotificationManager
import android.app.admin.DevicePolicyManager
import android.app.job.JobScheduler
import android.content.ComponentName
import android.content.Context
import android.content.Intent
import android.content.pm.PackageInfo
import android.os.Bundle
import android.content.RestrictionsManager
import cn.baomi.agent.JvmKeyStore
import cn.baomi.agent.Office
import cn.baomi.agent.platform.BaomiAdminReceiver
import cn.baomi.agent.platform.ManagedConfigIntake
import cn.baomi.agent.platform.Provisioning
import cn.baomi.agent.service.BaomiHost
import cn.baomi.agent.service.BaomiService
import cn.baomi.agent.service.FailureQueue
import cn.baomi.agent.service.HostState
import cn.baomi.agent.service.SyncJobService
import cn.baomi.core.EnforcementMode
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith
import org.robolectric.Robolectric
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.annotation.Config
import java.util.concurrent.TimeUnit

/**
 * The service as the platform starts it (onEnabled, boot): on API 26, 30 and 34 it opens the
 * agent, applies the posture through DPM, schedules the sync job and the deadline alarm, and
 * goes foreground; a store that will not open fails closed and the failure reaches the next
 * store that opens.
 */
@RunWith(BaomiRobolectricRunner::class)
@Config(sdk = [26, 30, 34], manifest = Config.NONE, shadows = [ShadowBaomiDpm::class])
class ServiceRobolectricTest {
    private val context: Context = RuntimeEnvironment.getApplication()
    private val admin = ComponentName(context, BaomiAdminReceiver::class.java)
    private val dpm = context.getSystemService(DevicePolicyManager::class.java)
    private val keys = JvmKeyStore()

    @Before
    fun deviceOwner() {
        BaomiHost.close()
        BaomiHost.keyStoreFactory = { keys }
        BaomiHost.storeDir(context).deleteRecursively()
        shadowOf(dpm).setDeviceOwner(admin)
        shadowOf(context.packageManager).installPackage(PackageInfo().apply {
            packageName = context.packageName
            requestedPermissions = cn.baomi.agent.platform.DpmGateway.selfPermissions().toTypedArray()
        })
        cn.baomi.agent.service.FailureQueue(context).pending()
        java.io.File(context.noBackupFilesDir, "baomi-pending-failures.txt").delete()
    }

    @After
    fun stop() = BaomiHost.close()

    private fun startService(intent: Intent? = null) =
        Robolectric.buildService(BaomiService::class.java, intent).create().startCommand(0, 1).get()

    private fun running(): BaomiHost {
        val s = BaomiHost.open(context)
        assertTrue("agent runs: ${(s as? HostState.FailedClosed)?.reason}", s is HostState.Running)
        val host = (s as HostState.Running).host
        host.start().get(30, TimeUnit.SECONDS)
        host.startError?.let { throw AssertionError("start failed", it) }
        return host
    }

    @Test
    fun theServiceStartsTheAgentAppliesThePostureAndSchedulesItsWork() {
        val office = Office()
        // Provisioned by QR: the trust root arrives in the admin extras.
        Provisioning(context).save(Bundle().apply { putString(Provisioning.TRUST_ROOT, office.trustRoot.readText()) })
        // The bundle for this device arrives through managed configuration, once the id is known.
        val service = startService()
        val host = running()
        host.start().get(30, TimeUnit.SECONDS)
        val device = host.agent.status().deviceId
        shadowOf(context.getSystemService(RestrictionsManager::class.java)).setApplicationRestrictions(Bundle().apply {
            putString(ManagedConfigIntake.KEY_BUNDLE, String(office.bundle(device, "general", 1)))
        })
        host.onWorker { host.intake.read() }.get(30, TimeUnit.SECONDS)
        assertEquals(1uL, host.agent.status().policyVersion)
        assertEquals(1uL, host.agent.status().trustRootVersion)

        // Foreground, with its notification.
        assertNotNull(shadowOf(service).lastForegroundNotification)
        // The sync job, persisted and periodic.
        val job = context.getSystemService(JobScheduler::class.java).allPendingJobs.single { it.id == SyncJobService.JOB_ID }
        assertTrue(job.isPeriodic && job.isPersisted)
        // Custody (a scan at sign-out): camera and capture off through DPM at once.
        val d = host.agent.handleEventJson("""{"at":"${java.time.Instant.now()}","type":"custody_started","document":"D-1","classification":"secret"}""")
        host.onWorker { host.applier.apply(d.posture) }.get(10, TimeUnit.SECONDS)
        assertTrue(dpm.getCameraDisabled(admin))
        assertTrue(dpm.getScreenCaptureDisabled(admin))
        assertEquals(EnforcementMode.DEVICE_OWNER, host.applier.role.mode)
        // A compliant phone with no messenger installed: no tamper recorded.
        assertTrue(host.agent.violations(0uL, 10u).none { "enforcement_failed" in it.json })

        // A beacon sighting sets a deadline: the alarm is armed at it.
        val uuid = java.util.UUID.fromString("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
        cn.baomi.agent.FastPath.beacon(host.agent.fastPathHandle().toLong(), System.currentTimeMillis(), uuid.mostSignificantBits, uuid.leastSignificantBits, 100, 1, -50)
        host.tick().get(10, TimeUnit.SECONDS)
        val alarm = shadowOf(context.getSystemService(AlarmManager::class.java)).nextScheduledAlarm
        assertNotNull("alarm at the next deadline", alarm)
        assertEquals(host.agent.status().nextDeadlineMs, alarm!!.triggerAtTime)

        // The same configuration delivered again: nothing installed, nothing recorded.
        val before = host.agent.violations(0uL, 100u).size
        val again = host.onWorker { host.intake.read() }.get(10, TimeUnit.SECONDS)!!
        assertFalse(again.changed)
        assertEquals(before, host.agent.violations(0uL, 100u).size)
    }

    @Test
    fun aStoreThatWillNotOpenFailsClosedAndTheFailureReachesTheNextStore() {
        // Another key than the one that wrapped the store's data key: the store refuses to open.
        startService()
        running().start().get(30, TimeUnit.SECONDS)
        BaomiHost.close()
        BaomiHost.keyStoreFactory = { JvmKeyStore() }
        val service = startService()
        val state = BaomiHost.open(context)
        assertTrue(state is HostState.FailedClosed)
        assertTrue(dpm.getCameraDisabled(admin))
        assertTrue(dpm.getScreenCaptureDisabled(admin))
        assertTrue(shadowOf(service).lastForegroundNotification.extras.getString("android.text").orEmpty().contains("Camera and screen capture are off"))
        assertEquals(1, FailureQueue(context).pending().size)

        // The officer re-provisions (a new store): the queued failure is recorded there.
        BaomiHost.close()
        BaomiHost.storeDir(context).deleteRecursively()
        val office = Office()
        Provisioning(context).save(Bundle().apply { putString(Provisioning.TRUST_ROOT, office.trustRoot.readText()) })
        startService()
        val host = running()
        host.start().get(30, TimeUnit.SECONDS)
        host.agent.installBundle(office.bundle(host.agent.status().deviceId, "general", 1))
        host.onWorker { }.get(10, TimeUnit.SECONDS)
        assertEquals(0, FailureQueue(context).pending().size)
    }

    @Test
    fun bootAndProvisioningStartTheService() {
        val app = shadowOf(RuntimeEnvironment.getApplication())
        cn.baomi.agent.platform.BootReceiver().onReceive(context, Intent(Intent.ACTION_BOOT_COMPLETED))
        assertEquals(BaomiService::class.java.name, app.nextStartedService.component?.className)
        BaomiAdminReceiver().onEnabled(context, Intent())
        assertEquals(BaomiService::class.java.name, app.nextStartedService.component?.className)
        val extras = android.os.PersistableBundle().apply {
            putString(Provisioning.SERVER_URL, "https://baomi.example.gov.cn")
            putString(Provisioning.TOKEN, "bme1-token")
        }
        BaomiAdminReceiver().onProfileProvisioningComplete(context, Intent().putExtra(DevicePolicyManager.EXTRA_PROVISIONING_ADMIN_EXTRAS_BUNDLE, extras))
        assertEquals("https://baomi.example.gov.cn", Provisioning(context).serverUrl)
        assertEquals("bme1-token", Provisioning(context).enrollmentToken)
        assertEquals(
            DevicePolicyManager.PROVISIONING_MODE_FULLY_MANAGED_DEVICE,
            cn.baomi.agent.platform.ProvisioningModeActivity.chooseMode(null),
        )
        assertEquals(
            DevicePolicyManager.PROVISIONING_MODE_MANAGED_PROFILE,
            cn.baomi.agent.platform.ProvisioningModeActivity.chooseMode(listOf(DevicePolicyManager.PROVISIONING_MODE_MANAGED_PROFILE)),
        )
    }
}
