// The sync transport on URLSession. The core calls it synchronously from the agent's queue
// (never the main thread), so it waits for the answer; every status goes back to the core,
// which decides. It throws only when no answer came (offline): the core backs off.
import BaomiCore
import Foundation

public final class URLSessionTransport: HttpClient {
    private let base: URL
    private let session: URLSession
    private let maxBody = 2 * 1024 * 1024

    public init(base: URL, timeout: TimeInterval = 40) {
        self.base = base
        let config = URLSessionConfiguration.ephemeral  // no cookies, no cache
        config.timeoutIntervalForRequest = timeout
        config.waitsForConnectivity = false
        session = URLSession(configuration: config)
    }

    public func post(path: String, headers: [HttpHeader], body: Data) throws -> HttpReply {
        guard let url = URL(string: path, relativeTo: base) else { throw BaomiError.Sync(reason: "bad path \(path)") }
        var req = URLRequest(url: url)
        req.httpMethod = "POST"
        req.httpBody = body
        for h in headers { req.setValue(h.value, forHTTPHeaderField: h.name) }
        let done = DispatchSemaphore(value: 0)
        var result: Result<HttpReply, Error> = .failure(BaomiError.Offline(reason: "no answer"))
        session.dataTask(with: req) { data, response, error in
            if let error {
                result = .failure(BaomiError.Offline(reason: "\(url): \(error.localizedDescription)"))
            } else if let http = response as? HTTPURLResponse {
                let bytes = (data ?? Data()).prefix(self.maxBody)
                result = .success(HttpReply(status: UInt16(clamping: http.statusCode), body: Data(bytes)))
            }
            done.signal()
        }.resume()
        done.wait()
        return try result.get()
    }
}

/// The wall clock.
public final class DeviceClock: Clock {
    public init() {}
    public func nowMs() throws -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
