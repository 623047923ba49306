package cn.baomi.agent.service

import android.app.job.JobInfo
import android.app.job.JobParameters
import android.app.job.JobScheduler
import android.app.job.JobService
import android.content.ComponentName
import android.content.Context

/**
 * The periodic compliance sync on JobScheduler (the framework's, so the module needs no
 * androidx): every 15 minutes (the platform's floor) with a network, persisted across reboots.
 * The fallback to the server's push channel; the core keeps the backoff and the overdue
 * deadline, so a failed run just asks to be rescheduled.
 */
class SyncJobService : JobService() {
    override fun onStartJob(params: JobParameters): Boolean {
        val host = (BaomiHost.open(this) as? HostState.Running)?.host ?: return false
        host.worker.execute {
            val ok = runCatching { host.syncNow().get() }.getOrDefault(false)
            jobFinished(params, !ok)
        }
        return true
    }

    override fun onStopJob(params: JobParameters): Boolean = true

    companion object {
        const val JOB_ID = 0x0BA0
        const val INTERVAL_MS = 15 * 60 * 1000L

        fun schedule(context: Context) {
            val js = context.getSystemService(JobScheduler::class.java) ?: return
            if (js.allPendingJobs.any { it.id == JOB_ID }) return
            js.schedule(
                JobInfo.Builder(JOB_ID, ComponentName(context, SyncJobService::class.java))
                    .setPeriodic(INTERVAL_MS)
                    .setRequiredNetworkType(JobInfo.NETWORK_TYPE_ANY)
                    .setPersisted(true)
                    .build(),
            )
        }
    }
}
