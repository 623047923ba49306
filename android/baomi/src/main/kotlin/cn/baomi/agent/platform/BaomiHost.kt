package cn.baomi.agent.platform

import android.app.admin.DeviceAdminReceiver
import android.content.ComponentName
import android.content.Context
import cn.baomi.agent.FastPath
import cn.baomi.agent.posture.PostureApplier
import cn.baomi.core.BaomiAgent
import cn.baomi.core.PlatformKind
import cn.baomi.core.SystemClock

/** The device admin receiver the MDM provisions as device owner. */
class BaomiAdminReceiver : DeviceAdminReceiver()

/**
 * Wires the pieces for the device-owner app: agent (store in no-backup files, key in
 * AndroidKeyStore), posture applier, managed configuration, signal sources.
 */
class BaomiHost private constructor(private val context: Context) {
    val agent: BaomiAgent = BaomiAgent.open(
        context.noBackupFilesDir.resolve("baomi").path,
        AndroidKeyStoreProvider(context),
        PlatformKind.ANDROID,
        SystemClock(),
    )
    val applier = PostureApplier(
        agent,
        DpmGateway(context, ComponentName(context, BaomiAdminReceiver::class.java)),
        context.packageName,
    )
    private val handle: Long
    val signals: SignalSources
    private val intake: ManagedConfigIntake

    init {
        FastPath.load()
        handle = agent.fastPathHandle().toLong()
        signals = SignalSources(context, handle, ::onEventJson, ::onPostureBits)
        intake = ManagedConfigIntake(context, agent) { applier.apply(agent.posture()) }
    }

    fun start() {
        applier.start()
        intake.start()
        signals.start()
        signals.reconcileInventory()
        applier.apply(agent.posture())
    }

    fun serverUrl(): String? =
        context.getSystemService(android.content.RestrictionsManager::class.java)
            ?.applicationRestrictions?.getString(ManagedConfigIntake.KEY_SERVER)

    private fun onEventJson(json: String) {
        val d = agent.handleEventJson(json)
        if (d.postureChanged) applier.apply(d.posture)
    }

    private fun onPostureBits(bits: Long) {
        val r = FastPath.decode(bits)
        if (r == null || r.postureChanged) applier.apply(agent.posture())
    }

    companion object {
        @Volatile private var instance: BaomiHost? = null

        fun get(context: Context): BaomiHost? = instance ?: synchronized(this) {
            instance ?: runCatching { BaomiHost(context.applicationContext) }.getOrNull()?.also { instance = it }
        }
    }
}
