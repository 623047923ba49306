// Signals on iOS, turned into the core's events (JSON lines, as on Android's uniffi path):
// CoreLocation beacon ranging for the zones' iBeacons (and region monitoring so ranging resumes
// when the phone enters one), significant location changes for geofences, and Core NFC reads of
// zone check-in tags. Each source translates; the core decides.
import BaomiCore
import CoreLocation
import CoreNFC
import Foundation

enum EventJSON {
    static func line(_ type: String, _ fields: [String: Any]) -> String {
        var obj = fields
        obj["type"] = type
        obj["at"] = ISO8601DateFormatter().string(from: Date())
        let data = (try? JSONSerialization.data(withJSONObject: obj)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

public final class BeaconAndLocation: NSObject, CLLocationManagerDelegate {
    private let manager = CLLocationManager()
    private let sink: (String) -> Void
    private let uuids: [UUID]

    /// `uuids`: the zones' beacon UUIDs from the installed policy.
    public init(uuids: [UUID], sink: @escaping (String) -> Void) {
        self.uuids = uuids
        self.sink = sink
        super.init()
        manager.delegate = self
    }

    public func start() {
        // "Always": geofences and beacon regions with the app in the background. Supervised
        // devices can have it pre-approved by the MDM (see ios/README.md).
        manager.requestAlwaysAuthorization()
        manager.allowsBackgroundLocationUpdates = true
        manager.startMonitoringSignificantLocationChanges()
        for uuid in uuids {
            let constraint = CLBeaconIdentityConstraint(uuid: uuid)
            manager.startMonitoring(for: CLBeaconRegion(beaconIdentityConstraint: constraint, identifier: uuid.uuidString))
            manager.startRangingBeacons(satisfying: constraint)
        }
    }

    public func locationManager(_ m: CLLocationManager, didRange beacons: [CLBeacon], satisfying c: CLBeaconIdentityConstraint) {
        for b in beacons where b.rssi != 0 {  // 0: not measured this round
            sink(EventJSON.line("beacon_seen", ["uuid": b.uuid.uuidString.lowercased(), "major": b.major.intValue,
                                                "minor": b.minor.intValue, "rssi": b.rssi]))
        }
    }

    public func locationManager(_ m: CLLocationManager, didUpdateLocations locations: [CLLocation]) {
        guard let l = locations.last, l.horizontalAccuracy >= 0 else { return }
        sink(EventJSON.line("location", ["lat": l.coordinate.latitude, "lon": l.coordinate.longitude,
                                         "accuracy_m": l.horizontalAccuracy]))
    }
}

/// Zone check-in tags (NDEF text or URI records such as `baomi:reading-room:in`), read while
/// the holder holds the phone to the tag at the door (iOS has no background tag reading for
/// this use).
public final class NfcCheckIn: NSObject, NFCNDEFReaderSessionDelegate {
    private let sink: (String) -> Void
    private var session: NFCNDEFReaderSession?

    public init(sink: @escaping (String) -> Void) { self.sink = sink }

    public func begin() {
        guard NFCNDEFReaderSession.readingAvailable else { return }
        session = NFCNDEFReaderSession(delegate: self, queue: nil, invalidateAfterFirstRead: true)
        session?.alertMessage = "Hold your iPhone to the zone's tag"
        session?.begin()
    }

    public func readerSession(_ s: NFCNDEFReaderSession, didDetectNDEFs messages: [NFCNDEFMessage]) {
        for record in messages.flatMap(\.records) {
            if let url = record.wellKnownTypeURIPayload() {
                sink(EventJSON.line("nfc_tag", ["tag": url.absoluteString])); return
            }
            let (text, _) = record.wellKnownTypeTextPayload()
            if let text { sink(EventJSON.line("nfc_tag", ["tag": text])); return }
        }
    }

    public func readerSession(_ s: NFCNDEFReaderSession, didInvalidateWithError error: Error) { session = nil }
}
