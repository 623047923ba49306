package cn.baomi.agent.service

import android.app.AlarmManager
import android.app.PendingIntent
import android.content.Context
import android.content.Intent
import android.os.Build

/**
 * An alarm at the core's next deadline (a beacon sighting running out, policy expiry, the sync
 * due): the service then ticks the core, which re-derives the posture. Exact when the platform
 * allows it (API 31+ asks `canScheduleExactAlarms`), otherwise allowed-while-idle.
 */
object DeadlineAlarm {
    fun arm(context: Context, atMs: Long?) {
        val am = context.getSystemService(AlarmManager::class.java) ?: return
        val pi = PendingIntent.getForegroundService(
            context, 0,
            Intent(context, BaomiService::class.java).setAction(BaomiService.ACTION_TICK),
            PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
        )
        if (atMs == null) {
            am.cancel(pi)
            return
        }
        if (Build.VERSION.SDK_INT < Build.VERSION_CODES.S || am.canScheduleExactAlarms()) {
            am.setExactAndAllowWhileIdle(AlarmManager.RTC_WAKEUP, atMs, pi)
        } else {
            am.setAndAllowWhileIdle(AlarmManager.RTC_WAKEUP, atMs, pi)
        }
    }
}
