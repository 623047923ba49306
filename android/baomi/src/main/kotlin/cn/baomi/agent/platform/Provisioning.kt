package cn.baomi.agent.platform

import android.app.admin.DevicePolicyManager
import android.content.Context
import android.content.Intent
import android.os.BaseBundle
import android.os.Build
import android.os.PersistableBundle

/**
 * What the MDM or the QR code handed over at provisioning, in the admin-extras bundle
 * (`android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE`):
 *
 * - `cn.baomi.trust_root`: the office's trust root (signed envelope JSON), provisioned out of
 *   band: the network never provides the first root;
 * - `cn.baomi.server_url`: the compliance server (`https://`);
 * - `cn.baomi.enrollment_token`: the one-time token from `baomi-server token new`.
 *
 * Kept in device-protected storage so the agent can start at boot before the first unlock.
 * Managed configuration (same names without the prefix) takes precedence when it is set, so
 * an EMM that owns the device can provide the same values.
 */
class Provisioning(context: Context) {
    private val prefs = context.createDeviceProtectedStorageContext()
        .getSharedPreferences("baomi-provisioning", Context.MODE_PRIVATE)
    private val context = context

    /** Keeps the values of an admin-extras bundle (null: nothing handed over). */
    fun save(extras: BaseBundle?) {
        if (extras == null) return
        prefs.edit().apply {
            for (k in KEYS) extras.getString(k)?.takeIf { it.isNotBlank() }?.let { putString(k, it) }
        }.apply()
    }

    /** Takes the extras from a provisioning intent (the receiver's or an activity's). */
    fun saveFrom(intent: Intent?) {
        if (intent == null) return
        @Suppress("DEPRECATION")
        val extras: PersistableBundle? = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) {
            intent.getParcelableExtra(DevicePolicyManager.EXTRA_PROVISIONING_ADMIN_EXTRAS_BUNDLE, PersistableBundle::class.java)
        } else {
            intent.getParcelableExtra(DevicePolicyManager.EXTRA_PROVISIONING_ADMIN_EXTRAS_BUNDLE)
        }
        save(extras)
    }

    val trustRoot: String? get() = managed(ManagedConfigIntake.KEY_TRUST_ROOT) ?: prefs.getString(TRUST_ROOT, null)
    val serverUrl: String? get() = managed(ManagedConfigIntake.KEY_SERVER) ?: prefs.getString(SERVER_URL, null)
    val enrollmentToken: String? get() = managed(ManagedConfigIntake.KEY_TOKEN) ?: prefs.getString(TOKEN, null)

    /** `mdm` when the fleet's EMM applies the posture (managed configuration `enforcement`). */
    val enforcement: String? get() = managed(ManagedConfigIntake.KEY_ENFORCEMENT)

    /** Whether this device enrolled (the token is spent then). */
    var enrolled: Boolean
        get() = prefs.getBoolean(ENROLLED, false)
        set(v) = prefs.edit().putBoolean(ENROLLED, v).remove(TOKEN).apply()

    private fun managed(key: String): String? =
        ManagedConfigIntake.restrictions(context)?.getString(key)?.takeIf { it.isNotBlank() }

    companion object {
        const val TRUST_ROOT = "cn.baomi.trust_root"
        const val SERVER_URL = "cn.baomi.server_url"
        const val TOKEN = "cn.baomi.enrollment_token"
        private const val ENROLLED = "enrolled"
        val KEYS = listOf(TRUST_ROOT, SERVER_URL, TOKEN)
    }
}
