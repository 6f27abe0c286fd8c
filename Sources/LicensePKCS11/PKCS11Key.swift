import CPKCS11
import Foundation
import LicenseCore
import LicenseTokens
import NIOPosix
import Synchronization

/// A lease-signing key in a PKCS#11 token: Ed25519 (`CKM_EDDSA`), or RSA with
/// `CKM_SHA256_RSA_PKCS` (RS256) or `CKM_SHA256_RSA_PKCS_PSS` with MGF1-SHA256 and a 32-byte salt
/// (PS256). Its public half is read from the token once; signatures are made in the token, on
/// the resolver's threads, so a slow or hung token holds no event loop and no Swift task: a
/// caller whose task is cancelled (the service's signing deadline) returns at once.
final class PKCS11Key: ExternalSigningKey {
    let uri: PKCS11URI
    let algorithm: LeaseTokenAlgorithm
    let verificationKey: VerificationKey
    private let token: PKCS11Token
    private let handle: Mutex<CK_OBJECT_HANDLE?>
    private let pool: PKCS11ThreadPool

    var reference: String { uri.description }

    init(uri: PKCS11URI, algorithm requested: LeaseTokenAlgorithm?, token: PKCS11Token, pool: PKCS11ThreadPool) throws {
        self.uri = uri
        self.token = token
        self.pool = pool
        let opened: (CK_OBJECT_HANDLE, LeaseTokenAlgorithm, VerificationKey)
        do {
            opened = try token.withSession { session in try Self.open(uri, requested: requested, token: token, session: session) }
        } catch let error as PKCS11Error {
            throw error.licenseError(token: uri.token)
        }
        let (handle, algorithm, publicKey) = opened
        self.handle = Mutex(handle)
        self.algorithm = algorithm
        self.verificationKey = publicKey
    }

    /// Finds the private key, checks its type against the algorithm, and reads its public half.
    private static func open(
        _ uri: PKCS11URI, requested: LeaseTokenAlgorithm?, token: PKCS11Token, session: CK_SESSION_HANDLE
    ) throws -> (CK_OBJECT_HANDLE, LeaseTokenAlgorithm, VerificationKey) {
        let name = uri.object.map { "'\($0)'" } ?? "with id \(Hex.encode(uri.id ?? Data()))"
        let privateKeys = try token.find(session, class: CK_OBJECT_CLASS(CKO_PRIVATE_KEY), label: uri.object, id: uri.id)
        guard let privateKey = privateKeys.first else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "no private key \(name) in PKCS#11 token '\(uri.token)'")
        }
        guard privateKeys.count == 1 else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "\(privateKeys.count) private keys match \(name) in PKCS#11 token '\(uri.token)': name one (object= and id=)")
        }
        let keyType = try token.attribute(session, privateKey, CK_ATTRIBUTE_TYPE(CKA_KEY_TYPE)).flatMap(Self.ulong)
        switch keyType {
        case CK_KEY_TYPE(CKK_EC_EDWARDS):
            if let requested, requested != .edDSA {
                throw LicenseError(.invalidArgument, .invalidRequest, "the PKCS#11 key \(name) is Ed25519: it signs EdDSA, not \(requested)")
            }
            guard let publicKey = try token.find(session, class: CK_OBJECT_CLASS(CKO_PUBLIC_KEY), label: uri.object, id: uri.id).first,
                  let point = try token.attribute(session, publicKey, CK_ATTRIBUTE_TYPE(CKA_EC_POINT)) else {
                throw LicenseError(.failedPrecondition, .invalidRequest, "no public key \(name) with its EC point beside the private key in PKCS#11 token '\(uri.token)'")
            }
            return (privateKey, .edDSA, try VerificationKey(ed25519: try Self.edwardsPoint(point)))
        case CK_KEY_TYPE(CKK_RSA):
            let algorithm = requested ?? .rs256
            guard algorithm == .rs256 || algorithm == .ps256 else {
                throw LicenseError(.invalidArgument, .invalidRequest, "the PKCS#11 key \(name) is RSA: it signs RS256 or PS256, not \(algorithm)")
            }
            // The modulus and exponent are public attributes of the private key too; the public object is the fallback.
            var source = privateKey
            if try token.attribute(session, privateKey, CK_ATTRIBUTE_TYPE(CKA_MODULUS)) == nil,
               let publicKey = try token.find(session, class: CK_OBJECT_CLASS(CKO_PUBLIC_KEY), label: uri.object, id: uri.id).first {
                source = publicKey
            }
            guard let modulus = try token.attribute(session, source, CK_ATTRIBUTE_TYPE(CKA_MODULUS)),
                  let exponent = try token.attribute(session, source, CK_ATTRIBUTE_TYPE(CKA_PUBLIC_EXPONENT)) else {
                throw LicenseError(.failedPrecondition, .invalidRequest, "PKCS#11 token '\(uri.token)' does not show the modulus of \(name)")
            }
            return (privateKey, algorithm, try VerificationKey(rsaModulus: modulus, exponent: exponent, algorithm: algorithm))
        default:
            throw LicenseError(.invalidArgument, .invalidRequest, "the PKCS#11 key \(name) is neither Ed25519 nor RSA")
        }
    }

    /// `CKA_EC_POINT` of an Ed25519 key: the 32 raw bytes, or wrapped in a DER OCTET STRING
    /// (modules differ; both are seen).
    static func edwardsPoint(_ value: Data) throws -> Data {
        let bytes = Array(value)
        if bytes.count == 32 { return value }
        if bytes.count == 34, bytes[0] == 0x04, bytes[1] == 0x20 { return Data(bytes[2...]) }
        throw LicenseError(.failedPrecondition, .invalidRequest, "an Ed25519 EC point is 32 bytes, raw or as a DER OCTET STRING; the token gave \(bytes.count)")
    }

    private static func ulong(_ data: Data) -> CK_ULONG? {
        guard data.count == MemoryLayout<CK_ULONG>.size else { return nil }
        return data.withUnsafeBytes { $0.loadUnaligned(as: CK_ULONG.self) }
    }

    func sign(_ input: Data) async throws -> Data {
        try await pool.run { [self] in try self.signNow(input) }
    }

    /// Signs on the calling thread (a pool thread), finding the key again if the token lost it.
    private func signNow(_ input: Data) throws -> Data {
        do {
            return try token.withSession { session in
                let key = try handle.withLock { $0 } ?? Self.open(uri, requested: algorithm, token: token, session: session).0
                handle.withLock { $0 = key }
                let mechanism = algorithm == .edDSA ? CKM_EDDSA : algorithm == .rs256 ? CKM_SHA256_RSA_PKCS : CKM_SHA256_RSA_PKCS_PSS
                return try token.sign(session, key: key, mechanism: CK_MECHANISM_TYPE(mechanism), pss: algorithm == .ps256, input)
            }
        } catch let error as PKCS11Error {
            if error.sessionLost { handle.withLock { $0 = nil } }
            throw error.licenseError(token: uri.token)
        }
    }
}

/// The threads that make blocking PKCS#11 calls, with a cap on the calls waiting for them: a
/// token that stops answering fills the cap, and further calls fail at once instead of queueing.
final class PKCS11ThreadPool: Sendable {
    /// The process's pool: four threads (so four signatures in the tokens at once, each on a
    /// session of its own), started when the first PKCS#11 key is used; at most 1,024 waiting.
    static let shared = PKCS11ThreadPool(threads: 4)

    private let pool: NIOThreadPool
    private let waiting = Atomic<Int>(0)
    private let limit: Int

    init(threads: Int) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        // The deadline bounds how long a caller waits; this bounds how many wait (and their memory).
        limit = 1024
    }

    /// Runs `body` on a pool thread; returns (throwing `CancellationError`) as soon as the
    /// calling task is cancelled, whatever `body` is doing.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        guard waiting.wrappingAdd(1, ordering: .relaxed).newValue <= limit else {
            waiting.wrappingSubtract(1, ordering: .relaxed)
            throw LicenseError(.unavailable, .signingUnavailable, "the PKCS#11 token is not answering: \(limit) signatures are waiting for it")
        }
        let outcome = Mutex<(continuation: CheckedContinuation<T, any Error>?, done: Bool)>((nil, false))
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                let cancelled = outcome.withLock { state -> Bool in
                    if state.done { return true }
                    state.continuation = continuation
                    return false
                }
                if cancelled {
                    waiting.wrappingSubtract(1, ordering: .relaxed)
                    continuation.resume(throwing: CancellationError())
                    return
                }
                pool.submit { _ in
                    let result = Result { try body() }
                    self.waiting.wrappingSubtract(1, ordering: .relaxed)
                    let waiter = outcome.withLock { state -> CheckedContinuation<T, any Error>? in
                        defer { state.continuation = nil; state.done = true }
                        return state.continuation
                    }
                    waiter?.resume(with: result)
                }
            }
        } onCancel: {
            let waiter = outcome.withLock { state -> CheckedContinuation<T, any Error>? in
                defer { state.continuation = nil; state.done = true }
                return state.continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
