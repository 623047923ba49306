// The store's data key, wrapped by a key that never leaves the device.
//
// Preferred: a Secure Enclave P-256 key (kSecAttrTokenIDSecureEnclave) and ECIES
// (eciesEncryptionCofactorVariableIVX963SHA256AESGCM): the data key is encrypted to the enclave
// key's public half and only the enclave can decrypt it. Fallback (simulator, no enclave): a
// random 256-bit key in a Keychain item, AfterFirstUnlockThisDeviceOnly (never in backups,
// never migrated to another phone), with AES-GCM from CryptoKit.
import BaomiCore
import CryptoKit
import Foundation
import Security

public final class KeychainKeyStore: KeyStore {
    private let tag: Data
    private let service = "cn.baomi.agent"

    public init(tag: String = "cn.baomi.kek.1") {
        self.tag = Data(tag.utf8)
    }

    public func keyId() throws -> String {
        SecureEnclave.isAvailable ? "ios-secure-enclave:\(String(decoding: tag, as: UTF8.self))"
            : "ios-keychain:\(String(decoding: tag, as: UTF8.self))"
    }

    public func wrap(dataKey: Data) throws -> Data {
        if SecureEnclave.isAvailable {
            let priv = try enclaveKey()
            guard let pub = SecKeyCopyPublicKey(priv) else { throw BaomiError.Platform(reason: "no public key") }
            var error: Unmanaged<CFError>?
            guard let out = SecKeyCreateEncryptedData(pub, .eciesEncryptionCofactorVariableIVX963SHA256AESGCM,
                                                      dataKey as CFData, &error) as Data? else {
                throw BaomiError.Platform(reason: "enclave wrap: \(String(describing: error?.takeRetainedValue()))")
            }
            return out
        }
        let sealed = try AES.GCM.seal(dataKey, using: try itemKey())
        guard let combined = sealed.combined else { throw BaomiError.Platform(reason: "AES-GCM") }
        return combined
    }

    public func unwrap(wrapped: Data) throws -> Data {
        if SecureEnclave.isAvailable {
            var error: Unmanaged<CFError>?
            guard let out = SecKeyCreateDecryptedData(try enclaveKey(), .eciesEncryptionCofactorVariableIVX963SHA256AESGCM,
                                                      wrapped as CFData, &error) as Data? else {
                // Another key: the core reports "data key does not match" and touches nothing.
                throw BaomiError.Refused(reason: "wrapped key does not open under the enclave key")
            }
            return out
        }
        do {
            return try AES.GCM.open(AES.GCM.SealedBox(combined: wrapped), using: try itemKey())
        } catch {
            throw BaomiError.Refused(reason: "wrapped key does not open under the keychain key")
        }
    }

    private func enclaveKey() throws -> SecKey {
        let query: [String: Any] = [kSecClass as String: kSecClassKey, kSecAttrApplicationTag as String: tag,
                                    kSecAttrKeyType as String: kSecAttrKeyTypeECSECPrimeRandom, kSecReturnRef as String: true]
        var item: CFTypeRef?
        if SecItemCopyMatching(query as CFDictionary, &item) == errSecSuccess, let key = item {
            return key as! SecKey  // swiftlint:disable:this force_cast (a kSecClassKey query returns SecKey)
        }
        var error: Unmanaged<CFError>?
        guard let access = SecAccessControlCreateWithFlags(nil, kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly,
                                                           .privateKeyUsage, &error) else {
            throw BaomiError.Platform(reason: "access control: \(String(describing: error?.takeRetainedValue()))")
        }
        let attributes: [String: Any] = [
            kSecAttrKeyType as String: kSecAttrKeyTypeECSECPrimeRandom,
            kSecAttrKeySizeInBits as String: 256,
            kSecAttrTokenID as String: kSecAttrTokenIDSecureEnclave,
            kSecPrivateKeyAttrs as String: [kSecAttrIsPermanent as String: true, kSecAttrApplicationTag as String: tag,
                                            kSecAttrAccessControl as String: access],
        ]
        guard let key = SecKeyCreateRandomKey(attributes as CFDictionary, &error) else {
            throw BaomiError.Platform(reason: "enclave key: \(String(describing: error?.takeRetainedValue()))")
        }
        return key
    }

    private func itemKey() throws -> SymmetricKey {
        let query: [String: Any] = [kSecClass as String: kSecClassGenericPassword, kSecAttrService as String: service,
                                    kSecAttrAccount as String: tag, kSecReturnData as String: true]
        var item: CFTypeRef?
        if SecItemCopyMatching(query as CFDictionary, &item) == errSecSuccess, let data = item as? Data {
            return SymmetricKey(data: data)
        }
        let key = SymmetricKey(size: .bits256)
        let add: [String: Any] = [kSecClass as String: kSecClassGenericPassword, kSecAttrService as String: service,
                                  kSecAttrAccount as String: tag,
                                  kSecAttrAccessible as String: kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly,
                                  kSecValueData as String: key.withUnsafeBytes { Data($0) }]
        let status = SecItemAdd(add as CFDictionary, nil)
        guard status == errSecSuccess else { throw BaomiError.Platform(reason: "keychain add: \(status)") }
        return key
    }
}
