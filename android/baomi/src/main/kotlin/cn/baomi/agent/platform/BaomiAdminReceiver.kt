package cn.baomi.agent.platform

import android.app.admin.DeviceAdminReceiver
import android.app.admin.DeviceAdminService
import android.app.admin.DevicePolicyManager
import android.content.BroadcastReceiver
import android.content.ComponentName
import android.content.Context
import android.content.Intent
import cn.baomi.agent.service.BaomiService

/** The device admin receiver the MDM provisions as device owner (or work-profile owner). */
class BaomiAdminReceiver : DeviceAdminReceiver() {
    /** Admin enabled (device owner set by QR, zero-touch or `adb shell dpm set-device-owner`). */
    override fun onEnabled(context: Context, intent: Intent) {
        BaomiService.start(context)
    }

    /** Legacy (pre-Android 12) provisioning ends here, with the admin extras. */
    override fun onProfileProvisioningComplete(context: Context, intent: Intent) {
        Provisioning(context).saveFrom(intent)
        val dpm = context.getSystemService(DevicePolicyManager::class.java)
        val admin = ComponentName(context, BaomiAdminReceiver::class.java)
        if (dpm.isProfileOwnerApp(context.packageName)) dpm.setProfileEnabled(admin)
        BaomiService.start(context)
    }
}

/** Boot, locked boot (direct boot) and the app's own update: start the agent again. */
class BootReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        when (intent.action) {
            Intent.ACTION_BOOT_COMPLETED, Intent.ACTION_LOCKED_BOOT_COMPLETED, Intent.ACTION_MY_PACKAGE_REPLACED ->
                BaomiService.start(context)
        }
    }
}

/**
 * The system keeps this bound while the admin's user runs, so the DPC counts as in the
 * foreground (and may start its service from the background) and is re-bound after a crash.
 */
class BaomiAdminService : DeviceAdminService() {
    override fun onCreate() {
        super.onCreate()
        BaomiService.start(this)
    }
}
