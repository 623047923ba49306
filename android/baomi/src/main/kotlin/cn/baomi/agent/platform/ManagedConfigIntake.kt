package cn.baomi.agent.platform

import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.content.RestrictionsManager
import cn.baomi.core.BaomiAgent
import cn.baomi.core.BaomiException

/**
 * Policy intake from managed configuration (the MDM's APP_RESTRICTIONS, schema in
 * res/xml/app_restrictions.xml): `trust_root` and `policy_bundle`, both signed envelopes.
 * The core verifies them before use; this class only moves bytes. The change broadcast is
 * registered in code (a manifest receiver does not get it).
 */
class ManagedConfigIntake(
    private val context: Context,
    private val agent: BaomiAgent,
    private val onInstalled: () -> Unit,
) {
    private val receiver = object : BroadcastReceiver() {
        override fun onReceive(c: Context, i: Intent) = read()
    }

    fun start() {
        context.registerReceiver(receiver, IntentFilter(Intent.ACTION_APPLICATION_RESTRICTIONS_CHANGED))
        read()
    }

    fun stop() = context.unregisterReceiver(receiver)

    /** Installs what managed configuration holds; a refused bundle is logged by the core. */
    fun read() {
        val rm = context.getSystemService(RestrictionsManager::class.java) ?: return
        val r = rm.applicationRestrictions
        try {
            r.getString(KEY_TRUST_ROOT)?.let { agent.installTrustRoot(it.toByteArray()) }
            r.getString(KEY_BUNDLE)?.let { agent.installBundle(it.toByteArray()) }
            onInstalled()
        } catch (e: BaomiException.Refused) {
            // The same bundle is delivered again on every change: an equal version is a
            // rollback refusal, which is expected and harmless.
            android.util.Log.i("baomi", "managed configuration: ${e.message}")
        }
    }

    companion object {
        const val KEY_TRUST_ROOT = "trust_root"
        const val KEY_BUNDLE = "policy_bundle"
        const val KEY_SERVER = "server_url"
        const val KEY_TOKEN = "enrollment_token"
    }
}
