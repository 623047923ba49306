package cn.baomi.agent.platform

import android.annotation.SuppressLint
import android.bluetooth.BluetoothManager
import android.bluetooth.le.ScanCallback
import android.bluetooth.le.ScanResult
import android.bluetooth.le.ScanSettings
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.database.ContentObserver
import android.hardware.camera2.CameraManager
import android.location.LocationListener
import android.location.LocationManager
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import android.net.NetworkRequest
import android.net.wifi.WifiInfo
import android.net.Uri
import android.os.Handler
import android.os.Looper
import android.provider.MediaStore
import cn.baomi.agent.Events
import cn.baomi.agent.FastPath

/**
 * Platform callbacks turned into core events. Each source only translates: the core decides.
 * [sink] takes event JSON (uniffi path); beacon and package events use the JNI fast path
 * through [fastHandle].
 */
class SignalSources(
    private val context: Context,
    private val fastHandle: Long,
    private val sink: (String) -> Unit,
    private val onPostureBits: (Long) -> Unit,
) {
    private val main = Handler(Looper.getMainLooper())
    private val now get() = System.currentTimeMillis()

    /** Package added/removed: must be registered at runtime (manifest receivers don't get it). */
    private val packages = object : BroadcastReceiver() {
        override fun onReceive(c: Context, i: Intent) {
            val pkg = i.data?.schemeSpecificPart ?: return
            val kind = if (i.action == Intent.ACTION_PACKAGE_REMOVED) FastPath.REMOVED else FastPath.INSTALLED
            onPostureBits(FastPath.packageEvent(fastHandle, now, kind, pkg))
        }
    }

    /** The camera went busy: some app opened it (the API does not say which). */
    private val camera = object : CameraManager.AvailabilityCallback() {
        override fun onCameraUnavailable(cameraId: String) {
            onPostureBits(FastPath.packageEvent(fastHandle, now, FastPath.CAMERA_OPENED, "unknown"))
        }
    }

    /** New images: photos and screenshots (by their relative path). */
    private val media = object : ContentObserver(main) {
        override fun onChange(selfChange: Boolean, uri: Uri?) {
            val path = uri?.toString().orEmpty()
            val kind = if (path.contains("Screenshot", ignoreCase = true)) FastPath.SCREEN_CAPTURED else FastPath.PHOTO_CAPTURED
            onPostureBits(FastPath.packageEvent(fastHandle, now, kind, "unknown"))
        }
    }

    /** iBeacon advertisements (Apple company id 0x004C, type 0x02 0x15). */
    private val ble = object : ScanCallback() {
        override fun onScanResult(callbackType: Int, r: ScanResult) {
            val d = r.scanRecord?.getManufacturerSpecificData(0x004C) ?: return
            if (d.size < 23 || d[0] != 0x02.toByte() || d[1] != 0x15.toByte()) return
            val hi = java.nio.ByteBuffer.wrap(d, 2, 8).long
            val lo = java.nio.ByteBuffer.wrap(d, 10, 8).long
            val major = ((d[18].toInt() and 0xff) shl 8) or (d[19].toInt() and 0xff)
            val minor = ((d[20].toInt() and 0xff) shl 8) or (d[21].toInt() and 0xff)
            onPostureBits(FastPath.beacon(fastHandle, now, hi, lo, major, minor, r.rssi))
        }
    }

    private val location = LocationListener { l ->
        sink(Events.location(l.time, l.latitude, l.longitude, l.accuracy))
    }

    private val wifi = object : ConnectivityManager.NetworkCallback(FLAG_INCLUDE_LOCATION_INFO) {
        override fun onCapabilitiesChanged(n: Network, caps: NetworkCapabilities) {
            val bssid = (caps.transportInfo as? WifiInfo)?.bssid ?: return
            sink(Events.wifiConnected(now, bssid))
        }

        override fun onLost(n: Network) = sink(Events.wifiDisconnected(now))
    }

    @SuppressLint("MissingPermission") // BLUETOOTH_SCAN / ACCESS_FINE_LOCATION are granted by the DPC policy.
    fun start() {
        context.registerReceiver(
            packages,
            IntentFilter().apply {
                addAction(Intent.ACTION_PACKAGE_ADDED)
                addAction(Intent.ACTION_PACKAGE_REMOVED)
                addDataScheme("package")
            },
        )
        context.getSystemService(CameraManager::class.java)?.registerAvailabilityCallback(camera, main)
        context.contentResolver.registerContentObserver(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, true, media)
        context.getSystemService(BluetoothManager::class.java)?.adapter?.bluetoothLeScanner?.startScan(
            null,
            ScanSettings.Builder().setScanMode(ScanSettings.SCAN_MODE_LOW_POWER).build(),
            ble,
        )
        context.getSystemService(LocationManager::class.java)
            ?.requestLocationUpdates(LocationManager.FUSED_PROVIDER, 60_000L, 10f, location, Looper.getMainLooper())
        context.getSystemService(ConnectivityManager::class.java)?.registerNetworkCallback(
            NetworkRequest.Builder().addTransportType(NetworkCapabilities.TRANSPORT_WIFI).build(),
            wifi,
        )
    }

    /** Full inventory, sent on start and before every sync (broadcasts can be missed). */
    fun reconcileInventory() {
        val installed = context.packageManager.getInstalledPackages(0).map { it.packageName }
        sink(Events.appInventory(now, installed))
    }

    /** An NFC check-in tag read by the foreground activity. */
    fun onNfcTag(idHex: String) = sink(Events.nfcTag(now, idHex))

    @SuppressLint("MissingPermission")
    fun stop() {
        context.unregisterReceiver(packages)
        context.getSystemService(CameraManager::class.java)?.unregisterAvailabilityCallback(camera)
        context.contentResolver.unregisterContentObserver(media)
        context.getSystemService(BluetoothManager::class.java)?.adapter?.bluetoothLeScanner?.stopScan(ble)
        context.getSystemService(LocationManager::class.java)?.removeUpdates(location)
        context.getSystemService(ConnectivityManager::class.java)?.unregisterNetworkCallback(wifi)
    }
}
