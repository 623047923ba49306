package cn.baomi.agent.platform

import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.content.RestrictionsManager
import android.os.Bundle
import cn.baomi.core.BaomiAgent
import cn.baomi.core.ManagedConfigOutcome

/**
 * Policy intake from managed configuration (the MDM's APP_RESTRICTIONS, schema in
 * res/xml/app_restrictions.xml): `trust_root` and `policy_bundle`, both signed envelopes,
 * handed to the core in one call (`applyManagedConfig`), which decides what is already
 * installed, older, newer or refused, and records refusals. This class only moves bytes. The
 * change broadcast is registered in code (a manifest receiver does not get it).
 */
class ManagedConfigIntake(
    private val context: Context,
    private val agent: BaomiAgent,
    private val onInstalled: () -> Unit,
) {
    private val receiver = object : BroadcastReceiver() {
        override fun onReceive(c: Context, i: Intent) {
            read()
        }
    }

    /** The last outcome, for the status screen and tests. */
    var last: ManagedConfigOutcome? = null
        private set

    fun start() {
        context.registerReceiver(receiver, IntentFilter(Intent.ACTION_APPLICATION_RESTRICTIONS_CHANGED))
        read()
    }

    fun stop() = runCatching { context.unregisterReceiver(receiver) }

    /** Hands what managed configuration holds to the core. */
    fun read(): ManagedConfigOutcome? {
        val r = restrictions(context) ?: return null
        val outcome = agent.applyManagedConfig(
            r.getString(KEY_TRUST_ROOT)?.toByteArray(),
            r.getString(KEY_BUNDLE)?.toByteArray(),
        )
        last = outcome
        if (outcome.changed) onInstalled()
        return outcome
    }

    companion object {
        const val KEY_TRUST_ROOT = "trust_root"
        const val KEY_BUNDLE = "policy_bundle"
        const val KEY_SERVER = "server_url"
        const val KEY_TOKEN = "enrollment_token"
        const val KEY_ENFORCEMENT = "enforcement"

        fun restrictions(context: Context): Bundle? =
            context.getSystemService(RestrictionsManager::class.java)?.applicationRestrictions
    }
}
