package cn.baomi.agent.service

import android.content.ComponentName
import android.content.Context
import android.os.Build
import android.os.SystemClock as AndroidClock
import android.provider.Settings
import cn.baomi.agent.FastPath
import cn.baomi.agent.net.UrlConnectionHttpClient
import cn.baomi.agent.platform.AndroidKeyStoreProvider
import cn.baomi.agent.platform.BaomiAdminReceiver
import cn.baomi.agent.platform.DpmGateway
import cn.baomi.agent.platform.ManagedConfigIntake
import cn.baomi.agent.platform.Provisioning
import cn.baomi.agent.platform.SignalSources
import cn.baomi.agent.posture.PostureApplier
import cn.baomi.core.BaomiAgent
import cn.baomi.core.BaomiException
import cn.baomi.core.HttpClient
import cn.baomi.core.KeyStore
import cn.baomi.core.PlatformKind
import cn.baomi.core.SystemClock
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.Future
import java.util.concurrent.TimeUnit

/** What opening the agent came to. */
sealed class HostState {
    /** The agent runs. */
    class Running(val host: BaomiHost) : HostState()

    /**
     * The store would not open (corrupt, tampered, wrong key, disk full): the phone runs with
     * camera and capture off and the failure is queued for the officer ([FailureQueue]).
     */
    class FailedClosed(val reason: String) : HostState()
}

/**
 * Owns the agent for the device-owner app, on one worker thread ([worker]): every call into
 * the core from the platform goes through it, in order. Wires the posture applier, managed
 * configuration, provisioning extras, signal sources, enrolment, the server's push channel
 * (long-poll; [SyncJobService] is the fallback) and the alarm at the core's next deadline.
 * Decides nothing the core decides.
 */
class BaomiHost private constructor(
    private val context: Context,
    val agent: BaomiAgent,
) {
    val worker: ExecutorService = Executors.newSingleThreadExecutor { r -> Thread(r, "baomi-agent").apply { isDaemon = true } }
    val provisioning = Provisioning(context)
    val applier = PostureApplier(
        agent,
        DpmGateway(context, ComponentName(context, BaomiAdminReceiver::class.java)),
        context.packageName,
        mdmApplies = { provisioning.enforcement == "mdm" },
    )
    val intake = ManagedConfigIntake(context, agent) { applier.apply(agent.posture()) }
    /** The signal sources, once started. */
    @Volatile var signals: SignalSources? = null
        private set

    @Volatile private var started = false
    @Volatile private var push: Thread? = null

    /** Runs [block] on the agent's thread. */
    fun <T> onWorker(block: () -> T): Future<T> = worker.submit<T> { block() }

    /** Why the last start did not complete, if it did not (status screen, tests). */
    @Volatile var startError: Throwable? = null
        private set

    /** Starts everything once; later calls only re-apply and re-arm (idempotent). */
    fun start(): Future<Unit> = onWorker {
        if (!started) {
            try {
                startOnce()
                started = true
                startError = null
            } catch (e: Exception) {
                // Retried at the next start (boot, alarm, job); the posture is still applied.
                startError = e
                android.util.Log.e(TAG, "start: ${e.message}", e)
            }
        }
        applier.apply(agent.posture())
        armDeadline()
    }

    private fun startOnce() {
        FailureQueue(context).drainInto(agent)
        observeUptime()
        provisioning.trustRoot?.let { agent.applyManagedConfig(it.toByteArray(), null) }
        applier.start()
        intake.start()
        if (signals == null) {
            val handle = agent.fastPathHandle().toLong()
            signals = SignalSources(
                context, handle,
                sink = { json -> onWorker { onEvent(json) } },
                onPostureBits = { bits -> onWorker { onPostureBits(bits) } },
                onPackageAdded = { pkg -> onWorker { applier.onPackageAdded(pkg) } },
            ).also {
                it.start()
                it.reconcileInventory()
            }
        }
        SyncJobService.schedule(context)
        enrolIfNeeded()
        startPush()
    }

    /** Time alone changed something (the alarm fired). */
    fun tick(): Future<Unit> = onWorker {
        observeUptime()
        agent.tick()?.let { applier.apply(it) }
        armDeadline()
    }

    /** One compliance sync; returns whether it completed. */
    fun syncNow(): Future<Boolean> = onWorker {
        val server = provisioning.serverUrl ?: return@onWorker false
        observeUptime()
        try {
            enrolIfNeeded()
            if (!provisioning.enrolled) return@onWorker false
            signals?.reconcileInventory()
            val outcome = agent.syncNow(http(server))
            applier.apply(outcome.posture)
            true
        } catch (e: BaomiException) {
            android.util.Log.w(TAG, "sync: ${e.message}")
            false
        } finally {
            armDeadline()
        }
    }

    private fun onEvent(json: String) {
        try {
            val d = agent.handleEventJson(json)
            if (d.postureChanged) applier.apply(d.posture)
        } catch (e: BaomiException) {
            android.util.Log.w(TAG, "event refused: ${e.message}")
        }
    }

    private fun onPostureBits(bits: Long) {
        val r = FastPath.decode(bits)
        if (r == null || r.postureChanged) applier.apply(agent.posture())
        if (r?.postureChanged == true) armDeadline()
    }

    private fun enrolIfNeeded() {
        if (provisioning.enrolled) return
        val server = provisioning.serverUrl ?: return
        val token = provisioning.enrollmentToken ?: return
        try {
            agent.enroll(server, token, http(server))
            provisioning.enrolled = true
        } catch (e: BaomiException.Offline) {
            android.util.Log.i(TAG, "enrolment waits for the network: ${e.message}")
        } catch (e: BaomiException) {
            android.util.Log.w(TAG, "enrolment refused: ${e.message}")
        }
    }

    /** The core counts offline time on the boot clock, whatever the wall clock says. */
    private fun observeUptime() {
        val boot = Settings.Global.getInt(context.contentResolver, Settings.Global.BOOT_COUNT, 0)
        runCatching { agent.observeUptime("boot-$boot", AndroidClock.elapsedRealtime()) }
    }

    private fun armDeadline() {
        val at = runCatching { agent.status().nextDeadlineMs }.getOrNull()
        DeadlineAlarm.arm(context, at)
    }

    /** Keeps the server's push channel open; a server without one leaves the job to sync. */
    private fun startPush() {
        if (push != null || provisioning.serverUrl == null) return
        push = Thread({
            var backoffMs = 5_000L
            while (!Thread.currentThread().isInterrupted) {
                val server = provisioning.serverUrl ?: break
                if (!provisioning.enrolled) {
                    sleep(backoffMs)
                    continue
                }
                try {
                    if (agent.waitForChange(http(server), 25_000u)) syncNow().get()
                    backoffMs = 5_000L
                } catch (e: BaomiException.Offline) {
                    sleep(backoffMs)
                    backoffMs = minOf(backoffMs * 2, 300_000L)
                } catch (e: BaomiException.Sync) {
                    // No push channel on this server (or it refused): the periodic job syncs.
                    android.util.Log.i(TAG, "push channel closed: ${e.message}")
                    break
                } catch (e: InterruptedException) {
                    break
                } catch (e: BaomiException) {
                    sleep(backoffMs)
                    backoffMs = minOf(backoffMs * 2, 300_000L)
                }
            }
        }, "baomi-push").apply { isDaemon = true; start() }
    }

    private fun sleep(ms: Long) = try {
        Thread.sleep(ms)
    } catch (e: InterruptedException) {
        Thread.currentThread().interrupt()
    }

    /** Stops the sources and threads (the service is destroyed; tests). */
    fun stop() {
        push?.interrupt()
        push = null
        onWorker {
            signals?.stop()
            intake.stop()
        }.get(10, TimeUnit.SECONDS)
        worker.shutdown()
        worker.awaitTermination(10, TimeUnit.SECONDS)
        // Releases the store (one agent per store) and every fast-path handle to it, so the
        // host can be opened again in this process.
        agent.destroy()
    }

    companion object {
        private const val TAG = "baomi"

        /** The data key's wrapper: AndroidKeyStore on a phone. A test seam (the host JVM has none). */
        @Volatile var keyStoreFactory: (Context) -> KeyStore = { AndroidKeyStoreProvider(it) }

        /** The sync transport. A test seam. */
        @Volatile var httpFactory: (String) -> HttpClient = { UrlConnectionHttpClient(it) }

        private fun http(server: String) = httpFactory(server)

        @Volatile private var state: HostState? = null

        /** Opens the agent once per process; a store that will not open fails closed. */
        fun open(context: Context): HostState = state ?: synchronized(this) {
            state ?: openNow(context.applicationContext ?: context).also { state = it }
        }

        /** Forgets the process's agent (the service was destroyed; tests). */
        fun close() = synchronized(this) {
            (state as? HostState.Running)?.host?.stop()
            state = null
        }

        private fun openNow(context: Context): HostState = try {
            FastPath.load()
            val agent = BaomiAgent.open(storeDir(context).path, keyStoreFactory(context), PlatformKind.ANDROID, SystemClock())
            HostState.Running(BaomiHost(context, agent))
        } catch (e: BaomiException) {
            failClosed(context, "store: ${e.message}")
        } catch (e: UnsatisfiedLinkError) {
            failClosed(context, "native library: ${e.message}")
        }

        fun storeDir(context: Context): File = File(context.noBackupFilesDir, "baomi")

        /**
         * Camera and capture off through DevicePolicyManager directly (no core to ask), and the
         * failure queued: it is recorded as a violation when a store opens again, and the
         * server sees the phone stop checking in meanwhile.
         */
        fun failClosed(context: Context, reason: String): HostState.FailedClosed {
            android.util.Log.e(TAG, "failing closed: $reason")
            FailureQueue(context).add(reason)
            val gw = DpmGateway(context, ComponentName(context, BaomiAdminReceiver::class.java))
            if (gw.role().canEnforce) {
                runCatching { gw.setCameraDisabled(true) }
                runCatching { gw.setScreenCaptureDisabled(true) }
            }
            return HostState.FailedClosed(reason)
        }

        internal val sdk: Int get() = Build.VERSION.SDK_INT
    }
}

/** Failures that happened when no store could record them, kept until one can. */
class FailureQueue(context: Context) {
    private val file = File(context.noBackupFilesDir, "baomi-pending-failures.txt")

    fun add(reason: String) {
        val line = "${System.currentTimeMillis()} ${reason.replace('\n', ' ').take(180)}\n"
        runCatching { file.appendText(line) }
    }

    fun pending(): List<String> = if (file.exists()) file.readLines().filter { it.isNotBlank() } else emptyList()

    /** Records every queued failure as a tamper violation, then forgets them. */
    fun drainInto(agent: BaomiAgent) {
        val lines = pending()
        if (lines.isEmpty()) return
        for (l in lines) runCatching { agent.reportEnforcementFailure("store_open", l) }
        file.delete()
    }
}
