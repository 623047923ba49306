package cn.baomi.agent

import android.content.Context
import androidx.work.Constraints
import androidx.work.ExistingPeriodicWorkPolicy
import androidx.work.NetworkType
import androidx.work.PeriodicWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.Worker
import androidx.work.WorkerParameters
import cn.baomi.agent.net.UrlConnectionHttpClient
import cn.baomi.core.BaomiException
import java.util.concurrent.TimeUnit

/**
 * Periodic compliance sync on WorkManager (15 minutes is WorkManager's floor; the policy's
 * `sync.interval_s` is used when longer). The core keeps the backoff and the overdue deadline,
 * so a failed run just reports retry. Built by Gradle only: androidx.work is on Google's Maven,
 * which the JVM test build here does not reach.
 */
class SyncWorker(context: Context, params: WorkerParameters) : Worker(context, params) {
    override fun doWork(): Result {
        val host = BaomiHost.get(applicationContext) ?: return Result.failure()
        val server = host.serverUrl() ?: return Result.success()
        return try {
            host.signals.reconcileInventory()
            val outcome = host.agent.syncNow(UrlConnectionHttpClient(server))
            host.applier.apply(outcome.posture)
            Result.success()
        } catch (e: BaomiException.Offline) {
            Result.retry()
        } catch (e: BaomiException) {
            android.util.Log.w("baomi", "sync: ${e.message}")
            Result.retry()
        }
    }

    companion object {
        fun schedule(context: Context, intervalS: Long) {
            val minutes = maxOf(15L, intervalS / 60)
            val request = PeriodicWorkRequestBuilder<SyncWorker>(minutes, TimeUnit.MINUTES)
                .setConstraints(Constraints.Builder().setRequiredNetworkType(NetworkType.CONNECTED).build())
                .build()
            WorkManager.getInstance(context)
                .enqueueUniquePeriodicWork("baomi-sync", ExistingPeriodicWorkPolicy.UPDATE, request)
        }
    }
}
