// Managed app configuration (the MDM's AppConfig, `com.apple.configuration.managed` in the
// app's standard UserDefaults) in, and feedback (`com.apple.feedback.managed`) out, which the
// MDM reads back with a ManagedApplicationFeedback query. Keys as on Android: `trust_root`,
// `policy_bundle` (signed envelopes), `server_url`, `enrollment_token`. The core decides what
// to install (applyManagedConfig); this file only moves bytes.
import BaomiCore
import Foundation

public final class ManagedAppConfig {
    static let configKey = "com.apple.configuration.managed"
    static let feedbackKey = "com.apple.feedback.managed"
    private let defaults: UserDefaults
    private var observer: NSObjectProtocol?

    public init(defaults: UserDefaults = .standard) { self.defaults = defaults }

    var values: [String: Any] { defaults.dictionary(forKey: Self.configKey) ?? [:] }
    public var serverURL: URL? { (values["server_url"] as? String).flatMap(URL.init(string:)) }
    public var enrollmentToken: String? { values["enrollment_token"] as? String }

    /// Hands the configuration to the core now and on every change.
    public func start(agent: BaomiAgent, onChange: @escaping (ManagedConfigOutcome) -> Void) {
        let apply = { [weak self] in
            guard let self else { return }
            let v = self.values
            do {
                let outcome = try agent.applyManagedConfig(
                    trustRoot: (v["trust_root"] as? String).map { Data($0.utf8) },
                    bundle: (v["policy_bundle"] as? String).map { Data($0.utf8) })
                self.feedback(["intake_trust_root": "\(outcome.trustRoot)", "intake_bundle": "\(outcome.bundle)"])
                onChange(outcome)
            } catch {
                self.feedback(["intake_error": "\(error)"])
            }
        }
        apply()
        observer = NotificationCenter.default.addObserver(
            forName: UserDefaults.didChangeNotification, object: defaults, queue: nil) { _ in apply() }
    }

    /// Feedback the MDM can read (status, the per-setting report, intake outcomes).
    public func feedback(_ entries: [String: String]) {
        var current = defaults.dictionary(forKey: Self.feedbackKey) ?? [:]
        for (k, v) in entries { current[k] = v }
        defaults.set(current, forKey: Self.feedbackKey)
    }
}
