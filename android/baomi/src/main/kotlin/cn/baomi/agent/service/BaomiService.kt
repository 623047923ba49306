package cn.baomi.agent.service

import android.app.Notification
import android.app.NotificationChannel
import android.app.NotificationManager
import android.app.Service
import android.content.Context
import android.content.Intent
import android.content.pm.ServiceInfo
import android.os.Build
import android.os.IBinder

/**
 * The foreground service that keeps the agent running (type `systemExempted`, which a
 * device-policy controller may use on Android 14+). Started from the admin receiver's
 * `onEnabled`, at boot, on package replace, by the device-admin service binding, and by the
 * deadline alarm (`ACTION_TICK`).
 */
class BaomiService : Service() {
    override fun onCreate() {
        super.onCreate()
        goForeground("Enforcing the security office's policy")
    }

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        when (val s = BaomiHost.open(this)) {
            is HostState.Running ->
                if (intent?.action == ACTION_TICK) s.host.tick() else s.host.start()
            is HostState.FailedClosed ->
                goForeground("Camera and screen capture are off: the agent's store could not open (${s.reason.take(80)})")
        }
        return START_STICKY
    }

    override fun onBind(intent: Intent?): IBinder? = null

    override fun onDestroy() {
        BaomiHost.close()
        super.onDestroy()
    }

    private fun goForeground(text: String) {
        val nm = getSystemService(NotificationManager::class.java)
        nm?.createNotificationChannel(NotificationChannel(CHANNEL, "Baomi", NotificationManager.IMPORTANCE_LOW))
        val n = Notification.Builder(this, CHANNEL)
            .setContentTitle("Baomi")
            .setContentText(text)
            .setSmallIcon(android.R.drawable.ic_lock_lock)
            .setOngoing(true)
            .build()
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.UPSIDE_DOWN_CAKE) {
            startForeground(NOTIFICATION_ID, n, ServiceInfo.FOREGROUND_SERVICE_TYPE_SYSTEM_EXEMPTED)
        } else {
            startForeground(NOTIFICATION_ID, n)
        }
    }

    companion object {
        const val ACTION_TICK = "cn.baomi.agent.action.TICK"
        const val CHANNEL = "baomi"
        const val NOTIFICATION_ID = 0x0BA0

        fun start(context: Context) {
            context.startForegroundService(Intent(context, BaomiService::class.java))
        }
    }
}
