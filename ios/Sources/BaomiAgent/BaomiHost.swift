// Wires the agent for the iOS app: one serial queue owns every call into the core; the key
// store, transport, managed configuration, signal sources, BGTaskScheduler refresh and the
// server's push channel. iOS cannot apply a posture itself: the MDM does (the server's MDM
// connector), so the app reports every setting as applied by the MDM.
import BackgroundTasks
import BaomiCore
import Foundation

public final class BaomiHost {
    public static let refreshTask = "cn.baomi.sync"  // in Info.plist BGTaskSchedulerPermittedIdentifiers
    public let agent: BaomiAgent
    private let queue = DispatchQueue(label: "cn.baomi.agent")
    private let config = ManagedAppConfig()
    private var signals: BeaconAndLocation?
    public private(set) lazy var nfc = NfcCheckIn { [weak self] in self?.event($0) }

    public init(storeDirectory: URL) throws {
        agent = try BaomiAgent.open(dir: storeDirectory.path, keyStore: KeychainKeyStore(), platform: .ios, clock: DeviceClock())
    }

    public func start(beaconUUIDs: [UUID]) {
        queue.async { [self] in
            observeUptime()
            config.start(agent: agent) { [weak self] _ in self?.reportApplied() }
            enrolIfNeeded()
            reportApplied()
            signals = BeaconAndLocation(uuids: beaconUUIDs) { [weak self] in self?.event($0) }
            DispatchQueue.main.async { self.signals?.start() }
            schedule()
            push()
        }
    }

    /// Call from `application(_:didFinishLaunchingWithOptions:)`, before launch completes.
    public func registerBackgroundRefresh() {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: Self.refreshTask, using: nil) { [weak self] task in
            guard let self else { return task.setTaskCompleted(success: false) }
            self.queue.async {
                let ok = (try? self.syncNow()) != nil
                self.schedule()
                task.setTaskCompleted(success: ok)
            }
        }
    }

    private func schedule() {
        let req = BGAppRefreshTaskRequest(identifier: Self.refreshTask)
        req.earliestBeginDate = Date(timeIntervalSinceNow: 15 * 60)
        try? BGTaskScheduler.shared.submit(req)
    }

    private func event(_ json: String) {
        queue.async { [self] in
            if let d = try? agent.handleEventJson(json: json), d.postureChanged { reportApplied() }
        }
    }

    /// The core counts offline time on the boot clock (mach_continuous_time counts sleep too),
    /// whatever the wall clock says; the boot is named by kern.boottime.
    private func observeUptime() {
        var boot = timeval()
        var size = MemoryLayout<timeval>.size
        sysctlbyname("kern.boottime", &boot, &size, nil, 0)
        var info = mach_timebase_info_data_t()
        mach_timebase_info(&info)
        let uptimeMs = Int64(mach_continuous_time() * UInt64(info.numer) / UInt64(info.denom) / 1_000_000)
        try? agent.observeUptime(bootId: "boot-\(boot.tv_sec)", uptimeMs: uptimeMs)
    }

    @discardableResult
    private func syncNow() throws -> SyncOutcome? {
        observeUptime()
        guard let server = config.serverURL else { return nil }
        let out = try agent.syncNow(http: URLSessionTransport(base: server))
        reportApplied()
        return out
    }

    private func enrolIfNeeded() {
        guard let server = config.serverURL, let token = config.enrollmentToken,
              UserDefaults.standard.string(forKey: "cn.baomi.enrolled") == nil else { return }
        if let id = try? agent.enroll(server: server.absoluteString, token: token, http: URLSessionTransport(base: server)) {
            UserDefaults.standard.set(id, forKey: "cn.baomi.enrolled")
        }
    }

    /// The posture is the MDM's to apply: each setting is reported as such, to the server at
    /// the next check-in and to the MDM as managed-app feedback.
    private func reportApplied() {
        guard let p = try? agent.posture() else { return }
        var settings = [
            AppliedSettingInfo(setting: "camera_disabled", desired: p.cameraDisabled, state: .byMdm, detail: nil),
            AppliedSettingInfo(setting: "screen_capture_disabled", desired: p.screenCaptureDisabled, state: .byMdm, detail: nil),
        ]
        settings += p.blockedPackages.map { AppliedSettingInfo(setting: "package:\($0)", desired: true, state: .byMdm, detail: nil) }
        try? agent.reportApplied(mode: .mdm, settings: settings)
        config.feedback(["camera_disabled": "\(p.cameraDisabled)", "screen_capture_disabled": "\(p.screenCaptureDisabled)"])
    }

    /// The server's long-poll, on its own thread (it does not hold the agent): a custody
    /// sign-out or a new bundle starts a sync at once.
    private func push() {
        guard let server = config.serverURL else { return }
        Thread.detachNewThread { [weak self] in
            var backoff: UInt32 = 5
            while let self {
                do {
                    if try self.agent.waitForChange(http: URLSessionTransport(base: server), maxWaitMs: 25_000) {
                        self.queue.sync { _ = try? self.syncNow() }
                    }
                    backoff = 5
                } catch BaomiError.Sync {
                    return  // no push channel on this server: BGTaskScheduler syncs
                } catch {
                    sleep(backoff)
                    backoff = min(backoff * 2, 300)
                }
            }
        }
    }
}
