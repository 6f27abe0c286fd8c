import CPKCS11
import Foundation
import LicenseCore
import Synchronization

/// One token of a module, found by its label: a pool of logged-in sessions that blocking calls
/// borrow one at a time. A session that reports the token or itself gone is dropped; the next
/// call finds the token's slot again, opens a new session and logs in again.
final class PKCS11Token: Sendable {
    let module: PKCS11Module
    let label: String
    private let pinSource: @Sendable () throws -> String?
    private struct State {
        var slot: CK_SLOT_ID?
        var idle: [CK_SESSION_HANDLE] = []
    }
    private let state = Mutex(State())

    init(module: PKCS11Module, label: String, pin: @escaping @Sendable () throws -> String?) {
        self.module = module
        self.label = label
        self.pinSource = pin
    }

    private var f: CK_FUNCTION_LIST { module.functions.pointee }

    /// Runs `body` with a logged-in session (blocking; call it off the event loops).
    func withSession<T>(_ body: (CK_SESSION_HANDLE) throws -> T) throws -> T {
        let session = try state.withLock { $0.idle.popLast() } ?? openSession()
        do {
            let result = try body(session)
            state.withLock { $0.idle.append(session) }
            return result
        } catch let error as PKCS11Error where error.sessionLost {
            _ = f.C_CloseSession!(session)
            state.withLock { $0.slot = nil; $0.idle.removeAll() }
            throw error
        } catch {
            state.withLock { $0.idle.append(session) }
            throw error
        }
    }

    private func openSession() throws -> CK_SESSION_HANDLE {
        let slot = try state.withLock { $0.slot } ?? module.slot(tokenLabel: label)
        state.withLock { $0.slot = slot }
        var session: CK_SESSION_HANDLE = 0
        try PKCS11Error.check(f.C_OpenSession!(slot, CK_FLAGS(CKF_SERIAL_SESSION | CKF_RW_SESSION), nil, nil, &session), "C_OpenSession")
        if var pin = try pinSource().map({ Array($0.utf8) }) {
            let result = f.C_Login!(session, CK_USER_TYPE(CKU_USER), &pin, CK_ULONG(pin.count))
            for index in pin.indices { pin[index] = 0 }
            if result != CKR_USER_ALREADY_LOGGED_IN {
                do {
                    try PKCS11Error.check(result, "C_Login")
                } catch {
                    _ = f.C_CloseSession!(session)
                    throw error
                }
            }
        }
        return session
    }

    /// The handles of objects of `objectClass` whose label and/or id match.
    func find(_ session: CK_SESSION_HANDLE, class objectClass: CK_OBJECT_CLASS, label: String?, id: Data?) throws -> [CK_OBJECT_HANDLE] {
        var classValue = objectClass
        var labelBytes = Array((label ?? "").utf8)
        var idBytes = Array(id ?? Data())
        return try withUnsafeMutableBytes(of: &classValue) { classPointer in
            try labelBytes.withUnsafeMutableBytes { labelPointer in
                try idBytes.withUnsafeMutableBytes { idPointer in
                    var template = [CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_CLASS), pValue: classPointer.baseAddress, ulValueLen: CK_ULONG(classPointer.count))]
                    if label != nil { template.append(CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_LABEL), pValue: labelPointer.baseAddress, ulValueLen: CK_ULONG(labelPointer.count))) }
                    if id != nil { template.append(CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_ID), pValue: idPointer.baseAddress, ulValueLen: CK_ULONG(idPointer.count))) }
                    try PKCS11Error.check(f.C_FindObjectsInit!(session, &template, CK_ULONG(template.count)), "C_FindObjectsInit")
                    defer { _ = f.C_FindObjectsFinal!(session) }
                    var handles = [CK_OBJECT_HANDLE](repeating: 0, count: 4)
                    var count: CK_ULONG = 0
                    try PKCS11Error.check(f.C_FindObjects!(session, &handles, CK_ULONG(handles.count), &count), "C_FindObjects")
                    return Array(handles.prefix(Int(count)))
                }
            }
        }
    }

    /// One attribute's value (nil when the object does not have it or keeps it secret).
    func attribute(_ session: CK_SESSION_HANDLE, _ object: CK_OBJECT_HANDLE, _ type: CK_ATTRIBUTE_TYPE) throws -> Data? {
        var probe = CK_ATTRIBUTE(type: type, pValue: nil, ulValueLen: 0)
        let sized = f.C_GetAttributeValue!(session, object, &probe, 1)
        guard sized == CKR_OK, probe.ulValueLen != CK_ULONG.max else {
            let error = PKCS11Error(function: "C_GetAttributeValue", code: sized)
            if error.sessionLost { throw error }
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: Int(probe.ulValueLen))
        try bytes.withUnsafeMutableBytes { buffer in
            var read = CK_ATTRIBUTE(type: type, pValue: buffer.baseAddress, ulValueLen: CK_ULONG(buffer.count))
            try PKCS11Error.check(f.C_GetAttributeValue!(session, object, &read, 1), "C_GetAttributeValue")
        }
        return Data(bytes)
    }

    /// Signs `input` with the private key `key` and `mechanism` (with its parameter).
    func sign(_ session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE, mechanism: CK_MECHANISM_TYPE, pss: Bool, _ input: Data) throws -> Data {
        var parameters = CK_RSA_PKCS_PSS_PARAMS(hashAlg: CK_MECHANISM_TYPE(CKM_SHA256), mgf: CK_RSA_PKCS_MGF_TYPE(CKG_MGF1_SHA256), sLen: 32)
        try withUnsafeMutableBytes(of: &parameters) { parameterBytes in
            var mech = CK_MECHANISM(mechanism: mechanism, pParameter: pss ? parameterBytes.baseAddress : nil,
                                    ulParameterLen: pss ? CK_ULONG(parameterBytes.count) : 0)
            try PKCS11Error.check(f.C_SignInit!(session, &mech, key), "C_SignInit")
        }
        var data = Array(input)
        var signature = [UInt8](repeating: 0, count: 1024)
        var length = CK_ULONG(signature.count)
        try PKCS11Error.check(f.C_Sign!(session, &data, CK_ULONG(data.count), &signature, &length), "C_Sign")
        return Data(signature.prefix(Int(length)))
    }

    /// Generates a key pair in the token: an Ed25519 or RSA-4096 signing key, not extractable.
    func generateKeyPair(_ session: CK_SESSION_HANDLE, rsa: Bool, label: String, id: Data) throws {
        guard let generate = f.C_GenerateKeyPair else {
            throw PKCS11Error(function: "C_GenerateKeyPair", code: CK_RV(CKR_FUNCTION_NOT_SUPPORTED))
        }
        var yes = CK_BBOOL(CK_TRUE), no = CK_BBOOL(CK_FALSE)
        var labelBytes = Array(label.utf8), idBytes = Array(id)
        // id-Ed25519 (1.3.101.112) as DER; RSA: 4096 bits, exponent 65537.
        var edwardsParams: [UInt8] = [0x06, 0x03, 0x2B, 0x65, 0x70]
        var bits = CK_ULONG(4096)
        var exponent: [UInt8] = [0x01, 0x00, 0x01]
        func attribute(_ type: UInt, _ pointer: UnsafeMutableRawPointer, _ count: Int) -> CK_ATTRIBUTE {
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(type), pValue: pointer, ulValueLen: CK_ULONG(count))
        }
        try withUnsafeMutableBytes(of: &yes) { yesPointer in
            try withUnsafeMutableBytes(of: &no) { noPointer in
                try labelBytes.withUnsafeMutableBytes { labelPointer in
                    try idBytes.withUnsafeMutableBytes { idPointer in
                        try edwardsParams.withUnsafeMutableBytes { paramsPointer in
                            try withUnsafeMutableBytes(of: &bits) { bitsPointer in
                                try exponent.withUnsafeMutableBytes { exponentPointer in
                                    var publicTemplate = [
                                        attribute(UInt(CKA_TOKEN), yesPointer.baseAddress!, 1), attribute(UInt(CKA_VERIFY), yesPointer.baseAddress!, 1),
                                        attribute(UInt(CKA_LABEL), labelPointer.baseAddress!, labelPointer.count), attribute(UInt(CKA_ID), idPointer.baseAddress!, idPointer.count),
                                    ]
                                    if rsa {
                                        publicTemplate.append(attribute(UInt(CKA_MODULUS_BITS), bitsPointer.baseAddress!, bitsPointer.count))
                                        publicTemplate.append(attribute(UInt(CKA_PUBLIC_EXPONENT), exponentPointer.baseAddress!, exponentPointer.count))
                                    } else {
                                        publicTemplate.append(attribute(UInt(CKA_EC_PARAMS), paramsPointer.baseAddress!, paramsPointer.count))
                                    }
                                    var privateTemplate = [
                                        attribute(UInt(CKA_TOKEN), yesPointer.baseAddress!, 1), attribute(UInt(CKA_PRIVATE), yesPointer.baseAddress!, 1),
                                        attribute(UInt(CKA_SENSITIVE), yesPointer.baseAddress!, 1), attribute(UInt(CKA_EXTRACTABLE), noPointer.baseAddress!, 1),
                                        attribute(UInt(CKA_SIGN), yesPointer.baseAddress!, 1),
                                        attribute(UInt(CKA_LABEL), labelPointer.baseAddress!, labelPointer.count), attribute(UInt(CKA_ID), idPointer.baseAddress!, idPointer.count),
                                    ]
                                    var mechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_EDWARDS_KEY_PAIR_GEN), pParameter: nil, ulParameterLen: 0)
                                    var publicKey: CK_OBJECT_HANDLE = 0, privateKey: CK_OBJECT_HANDLE = 0
                                    try PKCS11Error.check(generate(session, &mechanism, &publicTemplate, CK_ULONG(publicTemplate.count),
                                                                   &privateTemplate, CK_ULONG(privateTemplate.count), &publicKey, &privateKey), "C_GenerateKeyPair")
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
