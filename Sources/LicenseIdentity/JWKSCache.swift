import Foundation
import LicenseCore
import Logging

/// How the keys of identity providers are fetched and kept.
public struct JWKSCachePolicy: Hashable, Sendable {
    /// How long one fetch may take (connect, TLS, answer).
    public var fetchTimeout: Duration = .seconds(5)
    /// The lifetime when the answer has no `Cache-Control: max-age`.
    public var defaultLifetime: Duration = .seconds(3600)
    /// Bounds on the lifetime the provider asks for.
    public var minimumLifetime: Duration = .seconds(300)
    public var maximumLifetime: Duration = .seconds(86_400)
    /// The least time between two fetches caused by an unknown `kid`.
    public var unknownKeyRefreshInterval: Duration = .seconds(60)
    /// The least time between attempts after a failed fetch.
    public var failureRetryInterval: Duration = .seconds(5)
    /// How long expired keys are still used while the provider cannot be reached.
    public var staleLimit: Duration = .seconds(86_400)

    public init() {}
}

/// The signing keys of one issuer: fetched on first use, refreshed when their lifetime ends,
/// and re-fetched (at most once per `unknownKeyRefreshInterval`) when a token names a `kid`
/// the cache lacks. Concurrent callers share one fetch.
actor JWKSCache {
    private let issuer: OIDCIssuer
    private let fetcher: any HTTPFetching
    private let clock: any WallClock
    private let policy: JWKSCachePolicy
    private let logger: Logger

    private var keys: [String: IDTokenKey] = [:]
    private var fetchedAt: Timestamp?
    private var freshUntil: Timestamp?
    private var lastAttempt: Timestamp?
    private var lastAttemptFailed = false
    private var fetching = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(issuer: OIDCIssuer, fetcher: any HTTPFetching, clock: any WallClock, policy: JWKSCachePolicy, logger: Logger) {
        self.issuer = issuer
        self.fetcher = fetcher
        self.clock = clock
        self.policy = policy
        self.logger = logger
    }

    /// The key with this id, fetching the JWKS when it is stale or lacks the key.
    func key(_ kid: String) async throws -> IDTokenKey {
        var now = clock.now()
        if freshUntil.map({ now >= $0 }) ?? true, mayAttempt(now, after: policy.failureRetryInterval) {
            await refresh()
            now = clock.now()
        }
        if keys[kid] == nil, mayAttempt(now, after: lastAttemptFailed ? policy.failureRetryInterval : policy.unknownKeyRefreshInterval) {
            await refresh()
            now = clock.now()
        }
        guard let fetchedAt else {
            throw LicenseError(.unavailable, .identityProviderUnavailable, "the identity provider's keys could not be fetched; try again shortly", retryAfter: policy.failureRetryInterval)
        }
        guard let freshUntil, now < freshUntil.advanced(by: policy.staleLimit) else {
            logger.error("identity provider keys are too old to use", metadata: ["issuer": "\(issuer.issuer)", "fetched_at": "\(fetchedAt)"])
            throw LicenseError(.unavailable, .identityProviderUnavailable, "the identity provider's keys could not be refreshed; try again shortly", retryAfter: policy.failureRetryInterval)
        }
        guard let key = keys[kid] else {
            throw LicenseError(.unauthenticated, .invalidCredential, "the ID token was not accepted: its signing key is not published by the issuer")
        }
        return key
    }

    private func mayAttempt(_ now: Timestamp, after interval: Duration) -> Bool {
        guard let lastAttempt else { return true }
        return now >= lastAttempt.advanced(by: interval) || now < lastAttempt
    }

    /// Fetches the JWKS once; callers arriving during a fetch wait for it instead of starting another.
    private func refresh() async {
        if fetching {
            await withCheckedContinuation { waiters.append($0) }
            return
        }
        fetching = true
        defer {
            fetching = false
            let waiting = waiters
            waiters.removeAll()
            for waiter in waiting { waiter.resume() }
        }
        lastAttempt = clock.now()
        do {
            let url = try await jwksURL()
            let response = try await fetcher.get(url, timeout: policy.fetchTimeout)
            guard response.status == 200 else {
                throw LicenseError(.unavailable, .identityProviderUnavailable, "the JWKS answered HTTP \(response.status)")
            }
            let fetched = try IDTokenKey.keySet(response.body)
            let now = clock.now()
            keys = fetched
            fetchedAt = now
            freshUntil = now.advanced(by: lifetime(response.header("Cache-Control")))
            lastAttemptFailed = false
            logger.debug("fetched identity provider keys", metadata: ["issuer": "\(issuer.issuer)", "keys": "\(fetched.count)"])
        } catch {
            lastAttemptFailed = true
            let reason = (error as? LicenseError)?.message ?? "\(type(of: error))"
            logger.warning("could not fetch identity provider keys", metadata: ["issuer": "\(issuer.issuer)", "error": "\(reason)"])
        }
    }

    private func jwksURL() async throws -> String {
        switch issuer.keys {
        case .jwks(let url):
            return url
        case .discovery:
            let base = issuer.issuer.hasSuffix("/") ? String(issuer.issuer.dropLast()) : issuer.issuer
            let response = try await fetcher.get(base + "/.well-known/openid-configuration", timeout: policy.fetchTimeout)
            guard response.status == 200,
                  let document = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
                  document["issuer"] as? String == issuer.issuer,
                  let url = document["jwks_uri"] as? String
            else { throw LicenseError(.unavailable, .identityProviderUnavailable, "the issuer's discovery document is missing or names another issuer") }
            _ = try HTTPURL(url, purpose: "jwks_uri")
            return url
        }
    }

    private func lifetime(_ cacheControl: String?) -> Duration {
        guard let cacheControl else { return policy.defaultLifetime }
        for directive in cacheControl.split(separator: ",") {
            let parts = directive.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "max-age", let seconds = Int64(parts[1]) {
                return min(max(.seconds(seconds), policy.minimumLifetime), policy.maximumLifetime)
            }
        }
        return policy.defaultLifetime
    }
}
