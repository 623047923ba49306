package cn.baomi.agent.robolectric

import android.bluetooth.BluetoothManager
import android.content.Context
import android.content.Intent
import android.location.Location
import android.location.LocationManager
import android.net.ConnectivityManager
import android.net.Uri
import android.nfc.NdefMessage
import android.nfc.NdefRecord
import android.os.Build
import cn.baomi.agent.FastPath
import cn.baomi.agent.JvmKeyStore
import cn.baomi.agent.Office
import cn.baomi.agent.openAgent
import cn.baomi.agent.platform.NfcCheckIn
import cn.baomi.agent.platform.SignalSources
import cn.baomi.agent.tempDir
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.annotation.Config

/**
 * The signal sources on API 26, 30 and 34: each registers what its level has (no call newer
 * than the level runs), translates platform callbacks into the events the core expects, and
 * drops what says nothing (a redacted BSSID).
 */
@RunWith(BaomiRobolectricRunner::class)
@Config(sdk = [26, 30, 34], manifest = Config.NONE)
class SignalSourcesRobolectricTest {
    private val context: Context = RuntimeEnvironment.getApplication()
    private val events = mutableListOf<String>()
    private val added = mutableListOf<String>()

    private fun sources(handle: Long = 0L) = SignalSources(context, handle, { events += it }, {}, { added += it })

    @Test
    fun everySourceStartsOnItsLevelWithTheRightProviderAndFilter() {
        val lm = context.getSystemService(LocationManager::class.java)
        shadowOf(lm).setProviderEnabled(LocationManager.NETWORK_PROVIDER, true)
        shadowOf(lm).setProviderEnabled(LocationManager.GPS_PROVIDER, true)
        val s = sources()
        s.start()
        assertEquals(s.started.toString(), "started", s.started["packages"])
        assertEquals(s.started.toString(), "started", s.started["wifi"])
        assertEquals(s.started.toString(), "started", s.started["location"])
        assertTrue(shadowOf(lm).getLocationUpdateListeners().contains(s.location))
        // Fused exists from API 31 only; the network provider below.
        val provider = SignalSources.locationProvider(lm.allProviders)
        assertEquals(if (Build.VERSION.SDK_INT >= 31 && LocationManager.FUSED_PROVIDER in lm.allProviders) LocationManager.FUSED_PROVIDER else LocationManager.NETWORK_PROVIDER, provider)
        assertEquals(LocationManager.NETWORK_PROVIDER, SignalSources.locationProvider(listOf("gps", "network", "fused"), sdk = 26))
        assertEquals("fused", SignalSources.locationProvider(listOf("gps", "network", "fused"), sdk = 31))
        assertNull(SignalSources.locationProvider(emptyList()))
        // BLE: a scan with the iBeacon filter (unfiltered scans stop with the screen off).
        // No source hit a call its level lacks (NoSuchMethodError is reported, not thrown).
        assertTrue(s.started.toString(), s.started.values.none { "NoSuchMethodError" in it })
        if (Build.VERSION.SDK_INT >= 34) {
            assertEquals(s.started.toString(), "started", s.started["beacons"])
            val scanner = context.getSystemService(BluetoothManager::class.java).adapter.bluetoothLeScanner
            val scan = shadowOf(scanner).activeScans.single()
            val filter = scan.scanFilters().single()
            assertEquals(SignalSources.APPLE, filter.manufacturerId)
            assertEquals(0x02.toByte(), filter.manufacturerData!![0])
            assertEquals(0x15.toByte(), filter.manufacturerData!![1])
        } else {
            // Robolectric 4.17 cannot build a BluetoothAdapter below API 34 (its shadows use
            // API 34 classes); the source says so and the others run. On a phone it exists.
            assertTrue(s.started.toString(), s.started["beacons"]!!.startsWith("beacons failed"))
        }
        s.stop()
    }

    @Test
    fun aLocationFixBecomesALocationEventAndARedactedBssidNothing() {
        val s = sources()
        s.location.onLocationChanged(Location("network").apply { latitude = 39.9087; longitude = 116.3975; accuracy = 20f; time = 1_795_800_000_000 })
        assertTrue(events.single(), events.single().contains("\"type\":\"location\"") && events.single().contains("39.9087"))
        events.clear()
        s.onWifi(SignalSources.REDACTED_BSSID)
        s.onWifi(null)
        assertTrue("a redacted BSSID is not a network change: $events", events.isEmpty())
        s.onWifi("02:1a:11:f0:00:01")
        assertTrue(events.single().contains("02:1a:11:f0:00:01"))
        // The callback built for this level (NetworkCallback(int) only from API 31) loads here.
        assertTrue(s.wifi is ConnectivityManager.NetworkCallback)
    }

    @Test
    fun iBeaconAdvertisementsDecodeAndOthersAreIgnored() {
        val uuid = java.util.UUID.fromString("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
        val d = java.nio.ByteBuffer.allocate(23).put(0x02).put(0x15)
            .putLong(uuid.mostSignificantBits).putLong(uuid.leastSignificantBits)
            .putShort(100).putShort(1).put(-59).array()
        val b = SignalSources.iBeacon(d)!!
        assertEquals(uuid.mostSignificantBits, b.uuidHigh)
        assertEquals(uuid.leastSignificantBits, b.uuidLow)
        assertEquals(100, b.major)
        assertEquals(1, b.minor)
        assertNull(SignalSources.iBeacon(d.copyOf(10)))
        assertNull(SignalSources.iBeacon(d.clone().also { it[1] = 0x16 }))
    }

    /** PACKAGE_ADDED goes to the core through the fast path and to the applier at once. */
    @Test
    fun anInstalledPackageReachesTheCoreAndTheApplier() {
        val office = Office()
        val agent = openAgent(tempDir("baomi-signals"), JvmKeyStore())
        agent.installTrustRoot(office.trustRoot.readBytes())
        agent.installBundle(office.bundle(agent.status().deviceId, "general", 1))
        FastPath.load()
        val s = sources(agent.fastPathHandle().toLong())
        s.packages.onReceive(context, Intent(Intent.ACTION_PACKAGE_ADDED, Uri.parse("package:com.tencent.mm")))
        assertEquals(listOf("com.tencent.mm"), added)
        // Replacing (an update) is not a removal.
        s.packages.onReceive(context, Intent(Intent.ACTION_PACKAGE_REMOVED, Uri.parse("package:com.tencent.mm")).putExtra(Intent.EXTRA_REPLACING, true))
        assertEquals(listOf("com.tencent.mm"), added)
    }

    @Test
    fun nfcCheckInTagsAreReadFromTheirTextOrUriRecord() {
        val text = NdefMessage(NdefRecord.createTextRecord("en", "baomi:reading-room:in"))
        assertEquals("baomi:reading-room:in", NfcCheckIn.text(text))
        val uri = NdefMessage(NdefRecord.createUri("baomi:secrets-office:out"))
        assertEquals("baomi:secrets-office:out", NfcCheckIn.text(uri))
        assertNull(NfcCheckIn.text(NdefMessage(NdefRecord.createMime("text/plain", byteArrayOf(1, 2)))))
    }
}
