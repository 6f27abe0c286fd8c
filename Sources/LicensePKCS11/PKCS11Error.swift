import CPKCS11
import LicenseCore

/// A PKCS#11 function that returned something other than `CKR_OK`.
struct PKCS11Error: Error, CustomStringConvertible {
    let function: String
    let code: CK_RV

    var description: String { "\(function) returned \(Self.name(of: code))" }

    /// Whether the session or the token is gone (the session must be dropped, the key found again).
    var sessionLost: Bool {
        [CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_TOKEN_NOT_RECOGNIZED,
         CKR_DEVICE_ERROR, CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID, CKR_USER_NOT_LOGGED_IN, CKR_GENERAL_ERROR].contains(code)
    }

    static func name(of code: CK_RV) -> String {
        let names: [CK_RV: String] = [
            CKR_GENERAL_ERROR: "CKR_GENERAL_ERROR", CKR_ARGUMENTS_BAD: "CKR_ARGUMENTS_BAD", CKR_DEVICE_ERROR: "CKR_DEVICE_ERROR",
            CKR_DEVICE_MEMORY: "CKR_DEVICE_MEMORY", CKR_DEVICE_REMOVED: "CKR_DEVICE_REMOVED",
            CKR_FUNCTION_NOT_SUPPORTED: "CKR_FUNCTION_NOT_SUPPORTED", CKR_KEY_HANDLE_INVALID: "CKR_KEY_HANDLE_INVALID",
            CKR_KEY_TYPE_INCONSISTENT: "CKR_KEY_TYPE_INCONSISTENT", CKR_MECHANISM_INVALID: "CKR_MECHANISM_INVALID",
            CKR_MECHANISM_PARAM_INVALID: "CKR_MECHANISM_PARAM_INVALID", CKR_OBJECT_HANDLE_INVALID: "CKR_OBJECT_HANDLE_INVALID",
            CKR_PIN_INCORRECT: "CKR_PIN_INCORRECT", CKR_PIN_LOCKED: "CKR_PIN_LOCKED", CKR_SESSION_CLOSED: "CKR_SESSION_CLOSED",
            CKR_SESSION_HANDLE_INVALID: "CKR_SESSION_HANDLE_INVALID", CKR_TOKEN_NOT_PRESENT: "CKR_TOKEN_NOT_PRESENT",
            CKR_TOKEN_NOT_RECOGNIZED: "CKR_TOKEN_NOT_RECOGNIZED", CKR_USER_ALREADY_LOGGED_IN: "CKR_USER_ALREADY_LOGGED_IN",
            CKR_USER_NOT_LOGGED_IN: "CKR_USER_NOT_LOGGED_IN", CKR_BUFFER_TOO_SMALL: "CKR_BUFFER_TOO_SMALL",
            CKR_CRYPTOKI_NOT_INITIALIZED: "CKR_CRYPTOKI_NOT_INITIALIZED",
        ]
        return names[code] ?? "CKR 0x" + String(code, radix: 16)
    }

    /// Throws unless `code` is `CKR_OK`.
    static func check(_ code: CK_RV, _ function: String) throws {
        guard code == CKR_OK else { throw PKCS11Error(function: function, code: code) }
    }

    /// The error a caller sees: which token, what failed; never a PIN.
    func licenseError(token: String) -> LicenseError {
        let message: String
        switch code {
        case CKR_PIN_INCORRECT: message = "the PIN for PKCS#11 token '\(token)' is wrong (\(self))"
        case CKR_PIN_LOCKED: message = "the PIN for PKCS#11 token '\(token)' is locked (\(self))"
        default: message = "PKCS#11 token '\(token)': \(self)"
        }
        return LicenseError(.unavailable, .signingUnavailable, message)
    }
}
