import Foundation
import LicenseCore
@testable import LicenseServer
import Testing

/// The metric catalogue's conventions, the help lines it adds, which licenses get series, and
/// how TLS handshake failures are classified. (The live exposition is `ObservabilityTests`'.)
@Suite("Metric catalogue")
struct MetricCatalogueTests {
    @Test func namesFollowPrometheusConventionsAndAreUnique() {
        let names = MetricCatalogue.entries.map(\.name)
        #expect(Set(names).count == names.count, "duplicate names")
        for entry in MetricCatalogue.entries {
            #expect(entry.name.hasPrefix("licensed_") || entry.name.hasPrefix("process_"), "\(entry.name)")
            #expect(entry.name.range(of: "^[a-z_][a-z0-9_]*$", options: .regularExpression) != nil, "\(entry.name)")
            #expect((entry.type == "counter") == entry.name.hasSuffix("_total"), "\(entry.name) is a \(entry.type)")
            #expect(!entry.help.isEmpty && !entry.help.contains("\n"), "\(entry.name)")
            #expect(!entry.labels.contains("le") && !entry.labels.contains("quantile"), "\(entry.name)")
            if entry.name.contains("duration") || entry.name.hasSuffix("_lag_seconds") || entry.name.hasSuffix("_age_seconds") {
                #expect(entry.name.hasSuffix("_seconds"), "\(entry.name) is a time in base units")
            }
        }
        #expect(names.contains("licensed_build_info"))
    }

    @Test func helpLinesGoBeforeTheTypeLinesOfKnownFamiliesOnly() {
        let exposition = """
        # TYPE licensed_ready gauge
        licensed_ready 1.0
        # TYPE something_else counter
        something_else 3
        # TYPE licensed_calls_total counter
        licensed_calls_total{call="hello",code="OK",reason="OK"} 2

        """
        let output = String(decoding: MetricCatalogue.addingHelp(to: Array(exposition.utf8)), as: UTF8.self)
        #expect(output == """
        # HELP licensed_ready 1 when GET /ready answers 200, else 0.
        # TYPE licensed_ready gauge
        licensed_ready 1.0
        # TYPE something_else counter
        something_else 3
        # HELP licensed_calls_total Calls answered, by call, status code and reason (OK and OK for success).
        # TYPE licensed_calls_total counter
        licensed_calls_total{call="hello",code="OK",reason="OK"} 2

        """)
        #expect(MetricCatalogue.addingHelp(to: []).isEmpty)
    }

    static func license(_ id: String, tenant: String, status: EntityStatus = .active) -> License {
        License(id: LicenseID(rawValue: id), tenantID: TenantID(rawValue: tenant), name: id, seats: 5, status: status, createdAt: Timestamp(millisecondsSinceEpoch: 0))
    }

    @Test func licensesInUseGetSeriesFirstThenActiveOnesInAStableOrderUpToTheCap() {
        let licenses = [
            Self.license("z-idle", tenant: "a"), Self.license("b-used", tenant: "b"), Self.license("a-suspended", tenant: "a", status: .suspended),
            Self.license("a-idle", tenant: "a"), Self.license("c-used", tenant: "a"),
        ]
        let live: Set<LicenseID> = ["b-used", "c-used"]
        let all = MetricsCollector.licensesWithSeries(licenses, live: live, cap: 10).map(\.id.rawValue)
        #expect(all == ["c-used", "b-used", "a-idle", "z-idle", "a-suspended"])
        #expect(MetricsCollector.licensesWithSeries(licenses.reversed(), live: live, cap: 3).map(\.id.rawValue) == ["c-used", "b-used", "a-idle"])
        #expect(MetricsCollector.licensesWithSeries(licenses, live: live, cap: 0).isEmpty)
    }

    @Test func handshakeFailuresAreClassifiedIntoABoundedSetOfReasons() {
        struct Text: Error, CustomStringConvertible { let description: String }
        #expect(TLSHandshakeMetrics.reason(of: Text(description: "handshakeFailed(SSL_ERROR: TLSV1_ALERT_UNKNOWN_CA)")) == .peerAlert)
        #expect(TLSHandshakeMetrics.reason(of: Text(description: "handshakeFailed(UNSUPPORTED_PROTOCOL)")) == .protocolVersion)
        #expect(TLSHandshakeMetrics.reason(of: Text(description: "handshakeFailed(NO_SHARED_CIPHER)")) == .noSharedCipher)
        #expect(TLSHandshakeMetrics.reason(of: Text(description: "handshakeFailed(CERTIFICATE_VERIFY_FAILED)")) == .clientCertificate)
        #expect(TLSHandshakeMetrics.reason(of: Text(description: "something new")) == .other)
    }
}
