package cn.baomi.agent.platform

import android.annotation.SuppressLint
import android.bluetooth.BluetoothManager
import android.bluetooth.le.ScanCallback
import android.bluetooth.le.ScanFilter
import android.bluetooth.le.ScanResult
import android.bluetooth.le.ScanSettings
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.database.ContentObserver
import android.hardware.camera2.CameraManager
import android.location.Location
import android.location.LocationListener
import android.location.LocationManager
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import android.net.NetworkRequest
import android.net.Uri
import android.net.wifi.WifiInfo
import android.net.wifi.WifiManager
import android.os.Build
import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.provider.MediaStore
import cn.baomi.agent.Events
import cn.baomi.agent.FastPath

/**
 * Platform callbacks turned into core events. Each source only translates: the core decides.
 * [sink] takes event JSON (uniffi path); beacon and package events use the JNI fast path
 * through [fastHandle]. Every API newer than minSdk 26 is guarded by `SDK_INT`.
 */
class SignalSources(
    private val context: Context,
    private val fastHandle: Long,
    private val sink: (String) -> Unit,
    private val onPostureBits: (Long) -> Unit,
    private val onPackageAdded: (String) -> Unit = {},
) {
    private val main = Handler(Looper.getMainLooper())
    private val now get() = System.currentTimeMillis()

    /** What each source did at [start]: `started`, or why not (shown in status, tested). */
    val started = linkedMapOf<String, String>()

    /** Package added/removed: must be registered at runtime (manifest receivers don't get it). */
    internal val packages = object : BroadcastReceiver() {
        override fun onReceive(c: Context, i: Intent) {
            val pkg = i.data?.schemeSpecificPart ?: return
            val removed = i.action == Intent.ACTION_PACKAGE_REMOVED
            if (removed && i.getBooleanExtra(Intent.EXTRA_REPLACING, false)) return
            val kind = if (removed) FastPath.REMOVED else FastPath.INSTALLED
            onPostureBits(FastPath.packageEvent(fastHandle, now, kind, pkg))
            if (!removed) onPackageAdded(pkg)
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
    internal val ble = object : ScanCallback() {
        override fun onScanResult(callbackType: Int, r: ScanResult) {
            val b = iBeacon(r.scanRecord?.getManufacturerSpecificData(APPLE) ?: return) ?: return
            onPostureBits(FastPath.beacon(fastHandle, now, b.uuidHigh, b.uuidLow, b.major, b.minor, r.rssi))
        }
    }

    /** Below API 30 the three status methods are abstract: a lambda would not load there. */
    internal val location = object : LocationListener {
        override fun onLocationChanged(l: Location) {
            sink(Events.location(l.time, l.latitude, l.longitude, l.accuracy))
        }

        @Deprecated("API < 29 callback") override fun onStatusChanged(provider: String?, status: Int, extras: Bundle?) {}
        override fun onProviderEnabled(provider: String) {}
        override fun onProviderDisabled(provider: String) {}
    }

    /** `FLAG_INCLUDE_LOCATION_INFO` (API 31) or the BSSID is redacted; older levels read WifiManager. */
    internal val wifi: ConnectivityManager.NetworkCallback =
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
            object : ConnectivityManager.NetworkCallback(FLAG_INCLUDE_LOCATION_INFO) {
                override fun onCapabilitiesChanged(n: Network, caps: NetworkCapabilities) =
                    onWifi((caps.transportInfo as? WifiInfo)?.bssid)

                override fun onLost(n: Network) = sink(Events.wifiDisconnected(now))
            }
        } else {
            object : ConnectivityManager.NetworkCallback() {
                override fun onCapabilitiesChanged(n: Network, caps: NetworkCapabilities) = onWifi(legacyBssid())

                override fun onLost(n: Network) = sink(Events.wifiDisconnected(now))
            }
        }

    @Suppress("DEPRECATION")
    private fun legacyBssid(): String? =
        context.applicationContext.getSystemService(WifiManager::class.java)?.connectionInfo?.bssid

    /** A redacted BSSID (no location permission) says nothing: no event, not "another network". */
    internal fun onWifi(bssid: String?) {
        if (bssid == null || bssid.equals(REDACTED_BSSID, ignoreCase = true)) return
        sink(Events.wifiConnected(now, bssid))
    }

    @SuppressLint("MissingPermission") // Granted by the DPC itself (DpmGateway.grantSelfPermissions).
    fun start() {
        context.registerReceiver(
            packages,
            IntentFilter().apply {
                addAction(Intent.ACTION_PACKAGE_ADDED)
                addAction(Intent.ACTION_PACKAGE_REMOVED)
                addDataScheme("package")
            },
        )
        started["packages"] = "started"
        started["camera"] = source("camera") {
            context.getSystemService(CameraManager::class.java)?.registerAvailabilityCallback(camera, main) ?: return@source "no camera service"
            null
        }
        started["media"] = source("media") {
            context.contentResolver.registerContentObserver(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, true, media)
            null
        }
        started["beacons"] = source("beacons") {
            val scanner = context.getSystemService(BluetoothManager::class.java)?.adapter?.bluetoothLeScanner
                ?: return@source "no Bluetooth LE scanner (Bluetooth off or absent)"
            // A filter keeps the scan running with the screen off (unfiltered scans pause).
            scanner.startScan(listOf(iBeaconFilter()), ScanSettings.Builder().setScanMode(ScanSettings.SCAN_MODE_LOW_POWER).build(), ble)
            null
        }
        started["location"] = source("location") {
            val lm = context.getSystemService(LocationManager::class.java) ?: return@source "no location service"
            val provider = locationProvider(lm.allProviders) ?: return@source "no location provider"
            lm.requestLocationUpdates(provider, 60_000L, 10f, location, Looper.getMainLooper())
            null
        }
        started["wifi"] = source("wifi") {
            context.getSystemService(ConnectivityManager::class.java)?.registerNetworkCallback(
                NetworkRequest.Builder().addTransportType(NetworkCapabilities.TRANSPORT_WIFI).build(),
                wifi,
            ) ?: return@source "no connectivity service"
            null
        }
    }

    /** Runs one source's start; a refusal (permission not granted yet) is kept, not thrown. */
    private inline fun source(name: String, call: () -> String?): String = try {
        call() ?: "started"
    } catch (e: SecurityException) {
        "not permitted: ${e.message}"
    } catch (e: IllegalArgumentException) {
        "$name refused: ${e.message}"
    } catch (e: RuntimeException) {
        // One source failing (an OEM's Bluetooth stack) must not keep the others off.
        "$name failed: ${e.javaClass.simpleName}: ${e.message}"
    } catch (e: LinkageError) {
        // A framework class or method missing on this build: reported (the API-level tests
        // assert no source reports this), and the other sources still start.
        "$name failed: ${e.javaClass.simpleName}: ${e.message}"
    }

    /** Full inventory, sent on start and before every sync (broadcasts can be missed). */
    fun reconcileInventory() {
        @Suppress("DEPRECATION")
        val installed = context.packageManager.getInstalledPackages(0).map { it.packageName }
        sink(Events.appInventory(now, installed))
    }

    /** An NFC check-in tag, read by [NfcCheckIn]. */
    fun onNfcTag(tag: String) = sink(Events.nfcTag(now, tag))

    @SuppressLint("MissingPermission")
    fun stop() {
        runCatching { context.unregisterReceiver(packages) }
        context.getSystemService(CameraManager::class.java)?.unregisterAvailabilityCallback(camera)
        context.contentResolver.unregisterContentObserver(media)
        runCatching { context.getSystemService(BluetoothManager::class.java)?.adapter?.bluetoothLeScanner?.stopScan(ble) }
        context.getSystemService(LocationManager::class.java)?.removeUpdates(location)
        runCatching { context.getSystemService(ConnectivityManager::class.java)?.unregisterNetworkCallback(wifi) }
    }

    /** A decoded iBeacon advertisement. */
    data class IBeacon(val uuidHigh: Long, val uuidLow: Long, val major: Int, val minor: Int)

    companion object {
        const val APPLE = 0x004C
        const val REDACTED_BSSID = "02:00:00:00:00:00"

        /** iBeacon manufacturer data: 0x02 0x15, 16-byte UUID, major, minor, tx power. */
        fun iBeacon(d: ByteArray): IBeacon? {
            if (d.size < 23 || d[0] != 0x02.toByte() || d[1] != 0x15.toByte()) return null
            val hi = java.nio.ByteBuffer.wrap(d, 2, 8).long
            val lo = java.nio.ByteBuffer.wrap(d, 10, 8).long
            val major = ((d[18].toInt() and 0xff) shl 8) or (d[19].toInt() and 0xff)
            val minor = ((d[20].toInt() and 0xff) shl 8) or (d[21].toInt() and 0xff)
            return IBeacon(hi, lo, major, minor)
        }

        /** Matches any iBeacon: Apple's id, type 0x02 0x15, the rest masked out. */
        fun iBeaconFilter(): ScanFilter {
            val data = ByteArray(23).also { it[0] = 0x02; it[1] = 0x15 }
            val mask = ByteArray(23).also { it[0] = 0xff.toByte(); it[1] = 0xff.toByte() }
            return ScanFilter.Builder().setManufacturerData(APPLE, data, mask).build()
        }

        /** The fused provider exists from API 31; below, the network provider, then GPS. */
        fun locationProvider(available: List<String>, sdk: Int = Build.VERSION.SDK_INT): String? = when {
            sdk >= Build.VERSION_CODES.S && LocationManager.FUSED_PROVIDER in available -> LocationManager.FUSED_PROVIDER
            LocationManager.NETWORK_PROVIDER in available -> LocationManager.NETWORK_PROVIDER
            LocationManager.GPS_PROVIDER in available -> LocationManager.GPS_PROVIDER
            else -> null
        }
    }
}
