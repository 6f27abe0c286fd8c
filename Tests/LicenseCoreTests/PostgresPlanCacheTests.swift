import BackendTestSupport
import Logging
@testable import LicensePostgres
import PostgresNIO
import Testing

/// Batches of session writes run their prepared statements with generic plans, planned once per
/// connection: left to choose, Postgres kept planning the combined session statement anew (and
/// parsing the row-level-security function it inlines) for about half its executions. Reads get
/// Postgres's own choice back.
@Suite("Postgres plan cache", .timeLimit(.minutes(2)))
struct PostgresPlanCacheTests {
    @Test func writeBatchesPlanOnceAndReadsGetPostgresChoiceBack() async throws {
        let settings = try await PostgresTestServer.shared().createDatabase()
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .critical
        let client = PostgresClient(configuration: settings.clientConfiguration(), backgroundLogger: logger)
        let memo = SessionSettingsMemo()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await client.withConnection { connection in
                try await memo.setSession(of: connection, scope: "acme", left: 5_000, genericPlans: true, logger: logger)
                // More executions than the five custom plans Postgres tries before it compares.
                for _ in 0..<8 {
                    for try await _ in try await connection.execute(SetScopeStatement(scope: "acme", local: false), logger: logger) {}
                }
                let rows = try await connection.query(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = \(SetScopeStatement.name)", logger: logger
                ).collect()
                let (generic, custom) = try #require(rows.first).decode((Int64, Int64).self)
                #expect(custom == 0, "no execution was planned on its own")
                #expect(generic == 8, "every execution ran the generic plan")

                try await memo.setSession(of: connection, scope: "acme", left: 5_000, genericPlans: false, logger: logger)
                let mode = try await connection.query("SHOW plan_cache_mode", logger: logger).collect()
                #expect(try mode.first?.decode(String.self) == "auto")
            }
        }
    }
}
