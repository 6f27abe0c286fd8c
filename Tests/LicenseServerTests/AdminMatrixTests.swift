import BackendTestSupport
import Foundation
import LicenseClient
import LicenseCore
import LicenseWire
import Testing

/// Every administrative call × every role × own and other tenant, over the wire against the
/// embedded daemon: the answer is OK, PERMISSION_DENIED, or NOT_FOUND (the same as for an id
/// that does not exist), other tenants' data is never touched, and every call is audited.
@Suite("Roles and tenant isolation", .serialized, .timeLimit(.minutes(3)))
struct AdminMatrixTests {
    enum Outcome: String, CustomStringConvertible {
        case ok, denied, notFound
        var description: String { rawValue }
    }

    /// One tenant's fixtures: its license, a user whose sessions and keys the calls target.
    struct TenantFixture: Sendable {
        var id: String
        var license: String
        var targetUser: String
        var targetKey: String      // the target user's API key (to hold sessions)
        var standingKeyID: String  // a key and a live session that refused calls name
        var standingSession: String
    }

    enum Role: String, CaseIterable, CustomStringConvertible {
        case `operator`, admin, user, service
        var description: String { rawValue }
    }

    /// What each role gets for a call naming its own tenant's entity (operators: any tenant).
    /// Naming another tenant's entity is NOT_FOUND for every role but the operator.
    static let ownTenant: [String: [Role: Outcome]] = {
        let all: [Role: Outcome] = [.operator: .ok, .admin: .ok, .user: .ok, .service: .ok]
        let admins: [Role: Outcome] = [.operator: .ok, .admin: .ok, .user: .denied, .service: .denied]
        let operators: [Role: Outcome] = [.operator: .ok, .admin: .denied, .user: .denied, .service: .denied]
        return [
            "get_tenant": all, "update_tenant": admins, "create_license": operators, "get_license": all, "update_license": operators,
            "list_licenses": all, "license_status": all, "create_user": admins, "list_users": admins, "set_user_disabled": admins,
            "create_api_key": admins, "list_api_keys": admins, "rotate_api_key": admins, "revoke_api_key": admins,
            "list_sessions_by_license": all, "list_sessions_by_user": all, "revoke_session": admins, "query_audit": admins,
        ]
    }()

    static let untargeted: [String: [Role: Outcome]] = [
        "create_tenant": [.operator: .ok, .admin: .denied, .user: .denied, .service: .denied],
        "rotate_signing_key": [.operator: .ok, .admin: .denied, .user: .denied, .service: .denied],
        "list_tenants": [.operator: .ok, .admin: .ok, .user: .ok, .service: .ok],
    ]

    /// On the embedded default (isolation in the service) and on Postgres (and again in the
    /// database, by row-level security).
    @Test(arguments: ["embedded", "postgres"])
    func everyAdminCallForEveryRoleInOwnAndOtherTenant(_ backend: String) async throws {
        let postgres = backend == "postgres" ? try await PostgresTestServer.shared().createDatabase() : nil
        try await TestServer.run(postgres: postgres) { server in
            let op = try await server.connect()
            let acme = try await setUpTenant("acme", op, server)
            let globex = try await setUpTenant("globex", op, server)
            var clients: [Role: LicenseConnection] = [.operator: op]
            for role in [Role.admin, .user, .service] {
                var request = Coditect_License_V1_CreateUserRequest()
                request.tenantID = acme.id
                request.name = "acme \(role)"
                request.role = role == .admin ? "tenant_admin" : role == .user ? "user" : "service"
                clients[role] = try await server.connect(apiKey: try await op.call(.createUser(request)).user.apiKey)
            }
            let globexBefore = try await snapshot(globex, op)

            var checked = 0
            for role in Role.allCases {
                let client = clients[role]!
                for (call, expected) in Self.ownTenant.sorted(by: { $0.key < $1.key }) {
                    for (tenant, isOwn) in [(acme, true), (globex, false)] {
                        let want: Outcome = isOwn || role == .operator ? expected[role]! : .notFound
                        // Operators acting on globex would change it; the snapshot covers the others.
                        if role == .operator && !isOwn { continue }
                        let request = try await makeRequest(call, tenant: tenant, fresh: isOwn, server: server, op: op)
                        let got = await outcome { _ = try await client.call(request) }
                        #expect(got == want, "\(role) \(call) on \(isOwn ? "own" : "other") tenant")
                        checked += 1
                    }
                }
                for (call, expected) in Self.untargeted {
                    let request: ClientFrame.OneOf_Call = switch call {
                    case "create_tenant": .createTenant(.with { $0.name = "new by \(role)"; $0.id = "new-\(role)" })
                    case "rotate_signing_key": .rotateSigningKey(.init())
                    default: .listTenants(.init())
                    }
                    let got = await outcome { _ = try await client.call(request) }
                    #expect(got == expected[role]!, "\(role) \(call)")
                    checked += 1
                }
            }
            #expect(checked == 4 * 18 + 3 * 18 + 4 * 3)

            // Nothing of globex was touched by acme's principals.
            #expect(try await snapshot(globex, op) == globexBefore)
            // A tenant user sees only their own tenant in listings.
            let tenants = try await clients[.user]!.call(.listTenants(.init())).tenants.tenants.map(\.id)
            #expect(tenants == ["acme"])
            // Every refused call is audited with who, what and the reason; admin reads too.
            var query = Coditect_License_V1_QueryAuditRequest()
            query.tenantID = acme.id
            query.action = "refused."
            query.limit = 1000
            let refused = try await op.call(.queryAudit(query)).auditEvents.events
            #expect(refused.contains { $0.action == "refused.get_license" && $0.target == globex.license && $0.outcome == "LICENSE_UNKNOWN" })
            #expect(refused.contains { $0.action == "refused.create_license" && $0.outcome == "FORBIDDEN" })
            #expect(refused.allSatisfy { !$0.actor.isEmpty && $0.atMs > 0 })
            query.action = "read.list_users"
            #expect(try await op.call(.queryAudit(query)).auditEvents.events.map(\.actor).count == 1, "the tenant admin's one listing")
            // Globex's own log holds none of acme's attempts.
            query.tenantID = globex.id
            query.action = ""
            let globexLog = try await op.call(.queryAudit(query)).auditEvents.events
            #expect(!globexLog.contains { $0.actor.hasPrefix("usr_") && $0.action.hasPrefix("refused.") })
        }
    }

    func outcome(_ body: () async throws -> Void) async -> Outcome? {
        do {
            try await body()
            return .ok
        } catch let error as LicenseCallError {
            switch error.code {
            case .permissionDenied: return .denied
            case .notFound: return .notFound
            default:
                Issue.record("unexpected \(error)")
                return nil
            }
        } catch {
            Issue.record("unexpected \(error)")
            return nil
        }
    }

    func setUpTenant(_ id: String, _ op: LicenseConnection, _ server: TestServer) async throws -> TenantFixture {
        _ = try await op.call(.createTenant(.with { $0.id = id; $0.name = id }))
        _ = try await op.call(.createLicense(.with { $0.id = id + "-pro"; $0.tenantID = id; $0.name = "Pro"; $0.seats = 100 }))
        let user = try await op.call(.createUser(.with { $0.tenantID = id; $0.name = "target" })).user
        let key = try await op.call(.createApiKey(.with { $0.userID = user.userID; $0.name = "standing" })).apiKeyCreated.key.keyID
        let holder = try await server.connect(apiKey: user.apiKey)
        let session = try await holder.acquire(licenseID: id + "-pro", hardwareID: "hw-standing").sessionID
        await holder.close()
        return TenantFixture(id: id, license: id + "-pro", targetUser: user.userID, targetKey: user.apiKey, standingKeyID: key, standingSession: session)
    }

    /// A request for `call` naming `tenant`'s entities. Calls that consume what they name
    /// (rotate, revoke) get a fresh key or session each time in the own tenant; in the other
    /// tenant (where they are refused) they name standing ones, so nothing there changes.
    func makeRequest(_ call: String, tenant: TenantFixture, fresh: Bool, server: TestServer, op: LicenseConnection) async throws -> ClientFrame.OneOf_Call {
        switch call {
        case "get_tenant": return .getTenant(.with { $0.tenantID = tenant.id })
        case "update_tenant": return .updateTenant(.with { $0.tenantID = tenant.id; $0.name = tenant.id + " renamed" })
        case "create_license": return .createLicense(.with { $0.tenantID = tenant.id; $0.name = "Extra"; $0.seats = 1 })
        case "get_license": return .getLicense(.with { $0.licenseID = tenant.license })
        case "update_license": return .updateLicense(.with { $0.licenseID = tenant.license; $0.name = "Pro" })
        case "list_licenses": return .listLicenses(.with { $0.tenantID = tenant.id })
        case "license_status": return .licenseStatus(.with { $0.licenseID = tenant.license })
        case "create_user": return .createUser(.with { $0.tenantID = tenant.id; $0.name = "new" })
        case "list_users": return .listUsers(.with { $0.tenantID = tenant.id })
        case "set_user_disabled": return .setUserDisabled(.with { $0.userID = tenant.targetUser; $0.disabled = false })
        case "create_api_key": return .createApiKey(.with { $0.userID = tenant.targetUser; $0.name = "matrix" })
        case "list_api_keys": return .listApiKeys(.with { $0.tenantID = tenant.id })
        case "rotate_api_key", "revoke_api_key":
            let key = !fresh ? tenant.standingKeyID : try await op.call(.createApiKey(.with { $0.userID = tenant.targetUser; $0.name = "fresh" })).apiKeyCreated.key.keyID
            return call == "rotate_api_key" ? .rotateApiKey(.with { $0.keyID = key }) : .revokeApiKey(.with { $0.keyID = key })
        case "list_sessions_by_license": return .listSessions(.with { $0.licenseID = tenant.license })
        case "list_sessions_by_user": return .listSessions(.with { $0.userID = tenant.targetUser })
        case "revoke_session":
            if !fresh { return .revokeSession(.with { $0.sessionID = tenant.standingSession }) }
            let holder = try await server.connect(apiKey: tenant.targetKey)
            let session = try await holder.acquire(licenseID: tenant.license, hardwareID: "hw-\(UUID().uuidString)").sessionID
            await holder.close()
            return .revokeSession(.with { $0.sessionID = session })
        case "query_audit": return .queryAudit(.with { $0.tenantID = tenant.id })
        default:
            Issue.record("no request for \(call)")
            return .listTenants(.init())
        }
    }

    struct Snapshot: Equatable {
        var tenant: Coditect_License_V1_Tenant
        var license: Coditect_License_V1_License
        var users: [Coditect_License_V1_User]
        var keys: [Coditect_License_V1_ApiKey]
        var sessions: [Coditect_License_V1_SessionInfo]
    }

    func snapshot(_ tenant: TenantFixture, _ op: LicenseConnection) async throws -> Snapshot {
        Snapshot(
            tenant: try await op.call(.getTenant(.with { $0.tenantID = tenant.id })).tenant,
            license: try await op.call(.getLicense(.with { $0.licenseID = tenant.license })).license,
            users: try await op.call(.listUsers(.with { $0.tenantID = tenant.id })).users.users,
            keys: try await op.call(.listApiKeys(.with { $0.tenantID = tenant.id })).apiKeys.keys,
            sessions: try await op.call(.listSessions(.with { $0.licenseID = tenant.license; $0.includeEnded = true })).sessions.sessions
        )
    }
}
