#if canImport(Glibc)
import Glibc
#endif
import BackendTestSupport
import Foundation
import LicenseClient
import LicenseServer
import LicenseWire
import Testing

/// The metric catalogue, the dashboards and the alert rules against a real `licensed` on Redis
/// and Postgres, and the alerts firing in a real Prometheus (Debian's `prometheus` package).
@Suite("Observability", .serialized, .timeLimit(.minutes(4)))
struct ObservabilityTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let rules = Self.root + "/deploy/prometheus/licensed-alerts.yml"
    static let license = "obs-pro"

    struct Fixture: Sendable {
        let redis: RedisTestServer
        let daemon: LicensedProcess
        let opsPort: Int
        /// API keys of the license's users.
        let keys: [String]
    }

    /// Redis, Postgres and a daemon (backend gauges refreshed every second) with a license of two
    /// seats that ends in 30 days and three users; stops them all after `body`.
    static func withDaemon(_ body: (Fixture) async throws -> Void) async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        let postgres = try await PostgresTestServer.start()
        defer { postgres.stop() }
        let url = PostgresTestServer.url(try await postgres.createDatabase())
        let opsPort = try FreePort.next()
        let daemon = try await LicensedProcess.start([
            "--redis-url", redis.url, "--postgres-url", url, "--migrate", "--ops-listen", "127.0.0.1:\(opsPort)", "--metrics-interval", "1",
        ])
        do {
            let admin = try await daemon.connect(apiKey: LicensedProcess.operatorKey)
            var tenant = Coditect_License_V1_CreateTenantRequest()
            (tenant.id, tenant.name) = ("t-obs", "Observed")
            _ = try await admin.call(.createTenant(tenant))
            var request = Coditect_License_V1_CreateLicenseRequest()
            (request.id, request.tenantID, request.name, request.seats) = (license, tenant.id, "Pro", 2)
            request.validUntilMs = UInt64(Date().addingTimeInterval(30 * 86_400).timeIntervalSince1970 * 1000)
            _ = try await admin.call(.createLicense(request))
            var keys: [String] = []
            for i in 0..<3 {
                var user = Coditect_License_V1_CreateUserRequest()
                (user.tenantID, user.name) = (tenant.id, "user\(i)")
                keys.append(try await admin.call(.createUser(user)).user.apiKey)
            }
            await admin.close()
            try await body(Fixture(redis: redis, daemon: daemon, opsPort: opsPort, keys: keys))
        } catch {
            await daemon.stop(signal: SIGKILL)
            throw error
        }
        await daemon.stop(signal: SIGKILL)
    }

    /// Acquires a seat of the license as user `user`; returns the connection and the answer.
    static func acquire(_ fixture: Fixture, user: Int) async throws -> (LicenseConnection, ServerFrame) {
        let connection = try await fixture.daemon.connect(apiKey: fixture.keys[user])
        var acquire = Coditect_License_V1_AcquireRequest()
        (acquire.licenseID, acquire.hardwareID, acquire.idempotencyKey) = (license, "hw-\(user)", UUID().uuidString)
        return (connection, try await connection.send(.acquire(acquire)))
    }

    static func run(_ command: String) async throws -> CommandRun {
        try await CommandRun.run("/bin/sh", ["-c", command])
    }

    @Test func theExpositionFollowsTheCatalogueAndTheDashboardsAndAlertsNameOnlyWhatItHolds() async throws {
        try await Self.withDaemon { fixture in try await Self.checkExposition(fixture) }
    }

    static func checkExposition(_ fixture: Fixture) async throws {
        // Calls of every kind: two seats granted, a third denied, a heartbeat, a release,
        // admin reads, and a client that does not speak TLS.
        let (first, granted) = try await Self.acquire(fixture, user: 0)
        #expect(granted.status.code == .ok, "\(granted.status)")
        let (second, alsoGranted) = try await Self.acquire(fixture, user: 1)
        #expect(alsoGranted.status.code == .ok, "\(alsoGranted.status)")
        let (third, denied) = try await Self.acquire(fixture, user: 2)
        #expect(denied.status.reason == "NO_SEATS", "\(denied.status)")
        _ = try await first.heartbeat(sessionID: granted.acquire.sessionID)
        try await second.release(sessionID: alsoGranted.acquire.sessionID)
        for connection in [first, second, third] { await connection.close() }
        let plaintext = try await RawConnection(port: fixture.daemon.port, caFile: nil)
        try await plaintext.write(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        #expect(await plaintext.readsUntilClosed())

        // The backend gauges are refreshed every second: wait for the license's series.
        let scrape = try await OpsPortTests.poll(fixture.opsPort, "/metrics") {
            $0.body.contains(#"licensed_seats_in_use{tenant="t-obs",license="obs-pro"} 1"#)
        }
        #expect(scrape.body.contains(#"licensed_seats_in_use{tenant="t-obs",license="obs-pro"} 1"#), "\(scrape.body)")
        #expect(scrape.body.contains(#"licensed_seats_capacity{tenant="t-obs",license="obs-pro"} 2"#))
        #expect(scrape.body.contains(#"licensed_acquires_total{outcome="denied",reason="NO_SEATS"} 1"#))
        #expect(scrape.body.contains(#"licensed_tls_handshake_failures_total{reason="not_tls"} 1"#))
        #expect(scrape.body.contains(#"licensed_build_info{version="\#(BuildInfo.version)"} 1"#))

        // Every family of the catalogue is there with its type and help, and nothing else.
        var types: [String: String] = [:]
        for line in scrape.body.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            types[String(parts[2])] = String(parts[3])
        }
        for entry in MetricCatalogue.entries {
            #expect(types[entry.name] == entry.type, "\(entry.name): \(types[entry.name] ?? "missing") in the exposition, \(entry.type) in the catalogue")
            #expect(scrape.body.contains("# HELP \(entry.name) \(entry.help)\n"), "\(entry.name) has no help line")
        }
        #expect(Set(types.keys).subtracting(MetricCatalogue.entries.map(\.name)).isEmpty, "exported but not in the catalogue: \(Set(types.keys).subtracting(MetricCatalogue.entries.map(\.name)))")

        // promtool's lint of the live exposition reports nothing.
        let folder = try makeTemporaryDirectory("observability")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try scrape.body.write(toFile: folder + "/metrics.txt", atomically: true, encoding: .utf8)
        let lint = try await Self.run("promtool check metrics < \(folder)/metrics.txt")
        #expect(lint.status == 0 && lint.output.isEmpty, "promtool check metrics: \(lint.output)")

        // The dashboards and the alert rules name only what this daemon exports.
        let check = try await Self.run(
            "cd \(Self.root) && python3 Tools/check_observability.py --scrape \(folder)/metrics.txt --dashboards deploy/grafana --rules deploy/prometheus/licensed-alerts.yml --runbook docs/runbook.md"
        )
        #expect(check.status == 0, "\(check.output)")
        let generated = try await Self.run("cd \(Self.root) && python3 deploy/grafana/generate.py --check")
        #expect(generated.status == 0, "\(generated.output)")
    }

    @Test func theRulesPassPromtoolAndTheirUnitTests() async throws {
        let check = try await Self.run("promtool check rules \(Self.rules)")
        #expect(check.status == 0 && check.output.contains("SUCCESS"), "\(check.output)")
        let tests = try await Self.run("cd \(Self.root)/deploy/prometheus && promtool test rules licensed-alerts.test.yml")
        #expect(tests.status == 0 && tests.output.contains("SUCCESS"), "\(tests.output)")
        // Each alert of the rules file has at least one unit test.
        let rules = try String(contentsOfFile: Self.rules, encoding: .utf8)
        let unitTests = try String(contentsOfFile: Self.root + "/deploy/prometheus/licensed-alerts.test.yml", encoding: .utf8)
        let alerts = rules.split(separator: "\n").compactMap { line -> String? in
            let text = line.trimmingCharacters(in: .whitespaces)
            return text.hasPrefix("- alert: ") ? String(text.dropFirst("- alert: ".count)) : nil
        }
        #expect(alerts.count >= 15)
        for alert in alerts {
            #expect(unitTests.contains("alertname: \(alert)\n"), "\(alert) has no promtool unit test")
        }
    }

    /// A real Prometheus scraping `opsPort` every second with the alert rules, their `for`
    /// periods shortened to a second.
    static func withPrometheus(scraping opsPort: Int, _ body: (Int) async throws -> Void) async throws {
        let folder = try makeTemporaryDirectory("prometheus")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rules = try String(contentsOfFile: Self.rules, encoding: .utf8)
            .replacingOccurrences(of: #"for: \d+[smh]"#, with: "for: 1s", options: .regularExpression)
        try rules.write(toFile: folder + "/rules.yml", atomically: true, encoding: .utf8)
        try """
        global: {scrape_interval: 1s, evaluation_interval: 1s}
        rule_files: [rules.yml]
        scrape_configs:
          - job_name: licensed
            static_configs: [{targets: ['127.0.0.1:\(opsPort)']}]
        """.write(toFile: folder + "/prometheus.yml", atomically: true, encoding: .utf8)
        let port = try FreePort.next()
        let prometheus = try ChildProcess([
            "prometheus", "--config.file=\(folder)/prometheus.yml", "--storage.tsdb.path=\(folder)/data",
            "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
        ], logFile: folder + "/prometheus.log")
        defer { prometheus.stop() }
        let ready = try await OpsPortTests.poll(port, "/-/ready") { $0.status == 200 }
        #expect(ready.status == 200, "Prometheus did not start: \((try? String(contentsOfFile: folder + "/prometheus.log", encoding: .utf8)) ?? "")")
        try await body(port)
    }

    /// The alerts Prometheus reports as firing: name and labels.
    static func firing(_ prometheus: Int) async throws -> [(name: String, labels: [String: String])] {
        let answer = try await OpsPortTests.get(prometheus, "/api/v1/alerts")
        let alerts = ((answer.json["data"] as? [String: Any])?["alerts"] as? [[String: Any]]) ?? []
        return alerts.compactMap { alert in
            guard alert["state"] as? String == "firing", let labels = alert["labels"] as? [String: String], let name = labels["alertname"] else { return nil }
            return (name, labels)
        }
    }

    /// Polls Prometheus until `condition` holds for the firing alerts' names, or 60 s pass.
    static func waitForAlerts(_ prometheus: Int, until condition: (Set<String>) -> Bool) async throws -> Set<String> {
        let deadline = ContinuousClock.now + .seconds(60)
        var names: Set<String> = []
        while ContinuousClock.now < deadline {
            names = Set(try await firing(prometheus).map(\.name))
            if condition(names) { return names }
            try await Task.sleep(for: .milliseconds(500))
        }
        return names
    }

    @Test func alertsFireInPrometheusWhenRedisStopsOrALicenseFillsAndClearAfterwards() async throws {
        // (The steps are a method of their own: Swift 6.3.1 miscompiled, then crashed on, the
        // trailing closures of `poll` nested two closures deep.)
        try await Self.withDaemon { fixture in
            try await Self.withPrometheus(scraping: fixture.opsPort) { prometheus in
                try await Self.outageAndExhaustion(fixture, prometheus: prometheus)
            }
        }
    }

    static func outageAndExhaustion(_ fixture: Fixture, prometheus: Int) async throws {
        // Healthy: once Prometheus has scraped the daemon, nothing fires (before its
        // first scrape, LicensedNoReplicaReady may: no replica is known yet).
        let healthy = try await OpsPortTests.poll(fixture.opsPort, "/ready") { $0.status == 200 }
        #expect(healthy.status == 200, "\(healthy.body)")
        let quiet = try await Self.waitForAlerts(prometheus) { $0.isEmpty }
        #expect(quiet.isEmpty, "firing while healthy: \(quiet)")

        // Redis stops: /ready turns 503 and the seat-store alert fires (and no replica is ready).
        fixture.redis.stop()
        let down = try await OpsPortTests.poll(fixture.opsPort, "/ready") { $0.status == 503 }
        #expect(down.status == 503, "\(down.body)")
        let outage = try await Self.waitForAlerts(prometheus) { $0.isSuperset(of: ["LicensedSeatStoreUnreachable", "LicensedNoReplicaReady"]) }
        #expect(outage.isSuperset(of: ["LicensedSeatStoreUnreachable", "LicensedNoReplicaReady"]), "firing: \(outage)")
        #expect(!outage.contains("LicensedRepositoryUnreachable"), "firing: \(outage)")

        // Redis is back: ready again, and both alerts clear.
        try await fixture.redis.launch()
        let back = try await OpsPortTests.poll(fixture.opsPort, "/ready") { $0.status == 200 }
        #expect(back.status == 200, "\(back.body)")
        let cleared = try await Self.waitForAlerts(prometheus) { $0.isDisjoint(with: ["LicensedSeatStoreUnreachable", "LicensedNoReplicaReady"]) }
        #expect(cleared.isDisjoint(with: ["LicensedSeatStoreUnreachable", "LicensedNoReplicaReady"]), "still firing: \(cleared)")

        // Both seats taken: the exhaustion alert fires for this license.
        var held: [LicenseConnection] = []
        for user in 0..<2 {
            let (connection, answer) = try await Self.acquire(fixture, user: user)
            #expect(answer.status.code == .ok, "\(answer.status)")
            held.append(connection)
        }
        let full = try await Self.waitForAlerts(prometheus) { $0.contains("LicensedSeatsNearlyExhausted") }
        #expect(full.contains("LicensedSeatsNearlyExhausted"), "firing: \(full)")
        let labels = try await Self.firing(prometheus).first { $0.name == "LicensedSeatsNearlyExhausted" }?.labels ?? [:]
        #expect(labels["license"] == Self.license && labels["tenant"] == "t-obs" && labels["severity"] == "warning", "\(labels)")
        for connection in held { await connection.close() }
    }
}
