package cn.baomi.agent.platform

import android.content.pm.PackageManager
import android.content.Context
import android.os.Build
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import cn.baomi.core.BaomiException
import cn.baomi.core.KeyStore
import java.security.GeneralSecurityException
import javax.crypto.Cipher
import javax.crypto.KeyGenerator
import javax.crypto.SecretKey
import javax.crypto.spec.GCMParameterSpec

/**
 * Wraps the store's data key with an AES-256-GCM key that lives in AndroidKeyStore (in
 * StrongBox when the device has one). The wrapping key never leaves the keystore; the wrapped
 * blob is `iv (12) || ciphertext+tag`.
 */
class AndroidKeyStoreProvider(
    private val context: Context,
    private val alias: String = "baomi-kek-1",
) : KeyStore {
    override fun keyId(): String = "android-keystore:$alias"

    override fun wrap(dataKey: ByteArray): ByteArray = crypto {
        val c = Cipher.getInstance(TRANSFORMATION)
        c.init(Cipher.ENCRYPT_MODE, key())
        c.iv + c.doFinal(dataKey)
    }

    override fun unwrap(wrapped: ByteArray): ByteArray {
        if (wrapped.size < 12 + 16) throw BaomiException.Refused("wrapped key is too short")
        return try {
            val c = Cipher.getInstance(TRANSFORMATION)
            c.init(Cipher.DECRYPT_MODE, key(), GCMParameterSpec(128, wrapped.copyOfRange(0, 12)))
            c.doFinal(wrapped, 12, wrapped.size - 12)
        } catch (e: javax.crypto.AEADBadTagException) {
            throw BaomiException.Refused("wrapped key does not open under $alias")
        } catch (e: GeneralSecurityException) {
            throw BaomiException.Platform("keystore: ${e.message}")
        }
    }

    private fun key(): SecretKey {
        val ks = java.security.KeyStore.getInstance("AndroidKeyStore").apply { load(null) }
        (ks.getKey(alias, null) as? SecretKey)?.let { return it }
        // StrongBox exists from API 28; StrongBoxUnavailableException is caught as its parent
        // type, so the class is never loaded on older levels.
        val strongBox = Build.VERSION.SDK_INT >= Build.VERSION_CODES.P &&
            context.packageManager.hasSystemFeature(PackageManager.FEATURE_STRONGBOX_KEYSTORE)
        return try {
            generate(strongBox)
        } catch (e: java.security.ProviderException) {
            if (!strongBox) throw e
            generate(false)
        }
    }

    private fun generate(strongBox: Boolean): SecretKey {
        val spec = KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_ENCRYPT or KeyProperties.PURPOSE_DECRYPT)
            .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
            .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
            .setKeySize(256)
            .apply { if (strongBox && Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) setIsStrongBoxBacked(true) }
            .build()
        return KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, "AndroidKeyStore")
            .apply { init(spec) }
            .generateKey()
    }

    private inline fun <T> crypto(call: () -> T): T = try {
        call()
    } catch (e: GeneralSecurityException) {
        throw BaomiException.Platform("keystore: ${e.message}")
    }

    private companion object {
        const val TRANSFORMATION = "AES/GCM/NoPadding"
    }
}
