#if canImport(Glibc)
import Glibc
#endif
import CPKCS11
import LicenseCore
import Synchronization

/// A PKCS#11 module loaded with `dlopen` and initialised once (with the OS's locking, so any
/// thread may call it); shared by every key that names the same module path, and never unloaded.
final class PKCS11Module: @unchecked Sendable {
    let path: String
    /// The module's function list; immutable once loaded.
    let functions: UnsafeMutablePointer<CK_FUNCTION_LIST>

    private static let loaded = Mutex<[String: PKCS11Module]>([:])

    /// The module at `path`, loaded and initialised on first use.
    static func load(_ path: String) throws -> PKCS11Module {
        try loaded.withLock { modules in
            if let module = modules[path] { return module }
            let module = try PKCS11Module(path: path)
            modules[path] = module
            return module
        }
    }

    private init(path: String) throws {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw LicenseError(.failedPrecondition, .invalidRequest, "cannot load the PKCS#11 module \(path): \(reason)")
        }
        guard let symbol = dlsym(handle, "C_GetFunctionList") else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "\(path) is not a PKCS#11 module (no C_GetFunctionList)")
        }
        let getFunctionList = unsafeBitCast(symbol, to: CK_C_GetFunctionList.self)
        var list: UnsafeMutablePointer<CK_FUNCTION_LIST>?
        try PKCS11Error.check(getFunctionList(&list), "C_GetFunctionList")
        guard let list, list.pointee.version.major >= 2 else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "\(path) gave no PKCS#11 2.x function list")
        }
        var arguments = CK_C_INITIALIZE_ARGS(CreateMutex: nil, DestroyMutex: nil, LockMutex: nil, UnlockMutex: nil, flags: CK_FLAGS(CKF_OS_LOCKING_OK), pReserved: nil)
        let f = list.pointee
        guard f.C_Initialize != nil, f.C_GetSlotList != nil, f.C_GetTokenInfo != nil, f.C_OpenSession != nil, f.C_CloseSession != nil,
              f.C_Login != nil, f.C_GetAttributeValue != nil, f.C_FindObjectsInit != nil, f.C_FindObjects != nil, f.C_FindObjectsFinal != nil,
              f.C_SignInit != nil, f.C_Sign != nil else {
            throw LicenseError(.failedPrecondition, .invalidRequest, "\(path) lacks PKCS#11 functions licensed needs")
        }
        let initialised = withUnsafeMutablePointer(to: &arguments) { f.C_Initialize!(UnsafeMutableRawPointer($0)) }
        if initialised != CKR_CRYPTOKI_ALREADY_INITIALIZED {
            try PKCS11Error.check(initialised, "C_Initialize")
        }
        self.path = path
        self.functions = list
    }

    /// The slot holding the token labelled `label`.
    func slot(tokenLabel label: String) throws -> CK_SLOT_ID {
        var count: CK_ULONG = 0
        try PKCS11Error.check(functions.pointee.C_GetSlotList!(CK_BBOOL(CK_TRUE), nil, &count), "C_GetSlotList")
        var slots = [CK_SLOT_ID](repeating: 0, count: Int(count))
        try PKCS11Error.check(functions.pointee.C_GetSlotList!(CK_BBOOL(CK_TRUE), &slots, &count), "C_GetSlotList")
        var seen: [String] = []
        for slot in slots.prefix(Int(count)) {
            var info = CK_TOKEN_INFO()
            guard functions.pointee.C_GetTokenInfo!(slot, &info) == CKR_OK else { continue }
            let name = withUnsafeBytes(of: info.label) { String(decoding: $0, as: UTF8.self) }.trimmingTrailingSpaces
            if name == label { return slot }
            seen.append(name)
        }
        throw LicenseError(.failedPrecondition, .invalidRequest,
                           "no PKCS#11 token labelled '\(label)' in \(path) (tokens present: \(seen.isEmpty ? "none" : seen.joined(separator: ", ")))")
    }
}

extension String {
    /// Without the blank padding PKCS#11 puts after fixed-length labels.
    var trimmingTrailingSpaces: String {
        var text = Substring(self)
        while let last = text.last, last == " " || last == "\0" { text = text.dropLast() }
        return String(text)
    }
}
