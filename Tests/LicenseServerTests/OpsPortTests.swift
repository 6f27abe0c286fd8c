#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LicenseClient
import LicenseWire
import Testing

/// The ops port of a real `licensed`: liveness, readiness that follows its backends and its
/// drain, and Prometheus metrics.
@Suite("Ops port", .serialized, .timeLimit(.minutes(3)))
struct OpsPortTests {
    struct Answer {
        var status: Int
        var body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
    }

    static func get(_ port: Int, _ path: String) async throws -> Answer {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.timeoutInterval = 5
        request.cachePolicy = .reloadIgnoringLocalAndRemoteCacheData
        let (data, response) = try await URLSession.shared.data(for: request)
        return Answer(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: String(decoding: data, as: UTF8.self))
    }

    /// Polls `path` until `condition` holds or `limit` passes; returns the last answer.
    static func poll(_ port: Int, _ path: String, within limit: Duration = .seconds(30), until condition: (Answer) -> Bool) async throws -> Answer {
        let deadline = ContinuousClock.now + limit
        var last = Answer(status: 0, body: "")
        while ContinuousClock.now < deadline {
            if let answer = try? await get(port, path) {
                last = answer
                if condition(answer) { return answer }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        return last
    }

    @Test func healthReadinessAndMetricsFollowTheSeatStore() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        let opsPort = try FreePort.next()
        let daemon = try await LicensedProcess.start(["--redis-url", redis.url, "--ops-listen", "127.0.0.1:\(opsPort)"])

        #expect(try await Self.get(opsPort, "/health").status == 200)
        let ready = try await Self.poll(opsPort, "/ready") { $0.status == 200 }
        #expect(ready.status == 200 && ready.json["status"] as? String == "ready", "\(ready.body)")

        // A few calls, then their metrics are in the exposition.
        let client = try await daemon.connect(apiKey: LicensedProcess.operatorKey)
        _ = try await client.signingKeysJSON()
        await client.close()
        let metrics = try await Self.get(opsPort, "/metrics")
        #expect(metrics.status == 200)
        for name in ["licensed_connections_open", "licensed_connections_refused_total"] {
            #expect(metrics.body.contains(name), "\(name) missing from \(metrics.body.prefix(2000))")
        }

        // Redis stops: not ready, naming the seat store; Redis back: ready again.
        redis.stop()
        let down = try await Self.poll(opsPort, "/ready") { $0.status == 503 }
        #expect(down.status == 503 && (down.json["failing"] as? [String: String])?["seat_store"] != nil, "\(down.body)")
        #expect(try await Self.get(opsPort, "/health").status == 200)
        try await redis.launch()
        let back = try await Self.poll(opsPort, "/ready") { $0.status == 200 }
        #expect(back.status == 200, "\(back.body)")

        #expect(try await Self.get(opsPort, "/nope").status == 404)
        var post = URLRequest(url: URL(string: "http://127.0.0.1:\(opsPort)/ready")!)
        post.httpMethod = "POST"
        let (_, response) = try await URLSession.shared.data(for: post)
        #expect((response as? HTTPURLResponse)?.statusCode == 405)
        await daemon.stop(signal: SIGKILL)
    }

    @Test func readinessTurnsUnavailableAtOnceWhenTheDaemonStartsDraining() async throws {
        let opsPort = try FreePort.next()
        let daemon = try await LicensedProcess.start(["--ops-listen", "127.0.0.1:\(opsPort)", "--drain-timeout", "5"])
        #expect(try await Self.poll(opsPort, "/ready") { $0.status == 200 }.status == 200)
        // A signed-in client that never reads its answers keeps the drain going (FloodTests' flooder).
        let script = daemon.folder + "/flooder.py"
        try FloodTests.flooder.write(toFile: script, atomically: true, encoding: .utf8)
        let flooder = Process()
        flooder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        flooder.arguments = ["python3", script, "127.0.0.1", String(daemon.port), daemon.dataDirectory + "/tls/ca.pem", "signed", LicensedProcess.operatorKey]
        let output = daemon.folder + "/flooder.out", input = Pipe()
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        flooder.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        flooder.standardInput = input
        try flooder.run()
        defer { try? input.fileHandleForWriting.close() }
        let until = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < until, !((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").hasPrefix("sent") {
            try await Task.sleep(for: .milliseconds(100))
        }
        let pid = try #require(daemon.pid)
        kill(pid, SIGTERM)
        let draining = try await Self.poll(opsPort, "/ready", within: .seconds(3)) { $0.status == 503 }
        #expect(draining.status == 503 && ((draining.json["failing"] as? [String: String])?["listener"] ?? "").contains("draining"), "\(draining.body)")
        await daemon.stop(signal: SIGKILL)
    }

    @Test func jsonLogsAreOneObjectPerLineWithTheFieldsAggregatorsRead() async throws {
        let daemon = try await LicensedProcess.start(["--log-format", "json", "--log-level", "info"])
        // Every log line is a JSON object; the daemon's own stdout lines (the listening notice) are not logs.
        let lines = daemon.log().split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count >= 2, "\(daemon.log())")
        for line in lines {
            let entry = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(entry["severity"] as? String == "INFO" || entry["severity"] as? String == "WARNING", "\(line)")
            #expect((entry["time"] as? String)?.hasSuffix("Z") == true && entry["message"] is String && entry["labels"] is [String: String], "\(line)")
        }
        #expect(lines.contains { $0.contains(#""message":"listening""#) && $0.contains(#""address":"#) })
        await daemon.stop(signal: SIGKILL)
    }
}
