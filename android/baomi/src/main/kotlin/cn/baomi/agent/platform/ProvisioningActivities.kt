package cn.baomi.agent.platform

import android.app.Activity
import android.app.admin.DevicePolicyManager
import android.content.Intent
import android.os.Build
import android.os.Bundle
import cn.baomi.agent.service.BaomiService

/**
 * Android 12+ provisioning, step 1 (`android.app.action.GET_PROVISIONING_MODE`): Baomi asks to
 * be the device owner of a fully managed phone, or, where the provisioning only allows it,
 * the owner of a work profile (company-owned when the provisioning says so). The admin extras
 * (trust root, server, token) are kept here and passed on.
 */
class ProvisioningModeActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        Provisioning(this).saveFrom(intent)
        val allowed: List<Int>? = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
            intent.getIntegerArrayListExtra(DevicePolicyManager.EXTRA_PROVISIONING_ALLOWED_PROVISIONING_MODES)
        } else {
            null
        }
        val result = Intent().putExtra(DevicePolicyManager.EXTRA_PROVISIONING_MODE, chooseMode(allowed))
        intent.extras?.let { e ->
            @Suppress("DEPRECATION")
            e.get(DevicePolicyManager.EXTRA_PROVISIONING_ADMIN_EXTRAS_BUNDLE)?.let {
                if (it is android.os.PersistableBundle) result.putExtra(DevicePolicyManager.EXTRA_PROVISIONING_ADMIN_EXTRAS_BUNDLE, it)
            }
        }
        setResult(RESULT_OK, result)
        finish()
    }

    companion object {
        /** Fully managed first; a work profile only when fully managed is not allowed. */
        fun chooseMode(allowed: List<Int>?): Int = when {
            allowed == null || DevicePolicyManager.PROVISIONING_MODE_FULLY_MANAGED_DEVICE in allowed ->
                DevicePolicyManager.PROVISIONING_MODE_FULLY_MANAGED_DEVICE
            else -> DevicePolicyManager.PROVISIONING_MODE_MANAGED_PROFILE
        }
    }
}

/**
 * Android 12+ provisioning, step 2 (`android.app.action.ADMIN_POLICY_COMPLIANCE`): the admin
 * is in place; keep the extras, start the agent (which applies the posture and enrols), done.
 */
class PolicyComplianceActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        Provisioning(this).saveFrom(intent)
        BaomiService.start(this)
        setResult(RESULT_OK)
        finish()
    }
}

/** The holder's check-in screen: NFC reader mode for zone tags while it is in front. */
class CheckInActivity : Activity() {
    private var nfc: NfcCheckIn? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val host = (cn.baomi.agent.service.BaomiHost.open(this) as? cn.baomi.agent.service.HostState.Running)?.host
        nfc = NfcCheckIn(this) { tag -> host?.onWorker { host.signals?.onNfcTag(tag) } }
        title = if (nfc?.available == true) "Hold the phone to the zone's tag" else "NFC is off or absent"
    }

    override fun onResume() {
        super.onResume()
        nfc?.enable()
    }

    override fun onPause() {
        nfc?.disable()
        super.onPause()
    }
}
