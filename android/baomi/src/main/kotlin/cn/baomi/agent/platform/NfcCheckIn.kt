package cn.baomi.agent.platform

import android.app.Activity
import android.nfc.NdefMessage
import android.nfc.NdefRecord
import android.nfc.NfcAdapter
import android.nfc.Tag
import android.nfc.tech.Ndef

/**
 * NFC check-in tags at secure-zone doors, read in reader mode while [activity] (the agent's
 * status screen, or the holder's check-in screen) is in front. A tag carries an NDEF text or
 * URI record such as `baomi:reading-room:in`; a tag without one is reported by its id (hex),
 * which a policy's `nfc` list may name too. The core decides what the tag means.
 */
class NfcCheckIn(private val activity: Activity, private val onTag: (String) -> Unit) {
    private val adapter: NfcAdapter? = NfcAdapter.getDefaultAdapter(activity)

    /** Whether this phone has NFC and it is on. */
    val available: Boolean get() = adapter?.isEnabled == true

    /** Call from `onResume`. */
    fun enable() {
        adapter?.enableReaderMode(
            activity,
            { tag -> onTag(read(tag)) },
            NfcAdapter.FLAG_READER_NFC_A or NfcAdapter.FLAG_READER_NFC_B or
                NfcAdapter.FLAG_READER_NFC_F or NfcAdapter.FLAG_READER_NFC_V,
            null,
        )
    }

    /** Call from `onPause`. */
    fun disable() {
        adapter?.disableReaderMode(activity)
    }

    companion object {
        fun read(tag: Tag): String {
            val message = runCatching { Ndef.get(tag)?.cachedNdefMessage }.getOrNull()
            return message?.let(::text) ?: tag.id.joinToString("") { "%02x".format(it) }
        }

        /** The first text or URI record of [message], or null. */
        fun text(message: NdefMessage): String? {
            for (r in message.records) {
                if (r.tnf != NdefRecord.TNF_WELL_KNOWN) continue
                if (r.type.contentEquals(NdefRecord.RTD_TEXT)) {
                    val p = r.payload
                    if (p.isEmpty()) continue
                    val langLen = p[0].toInt() and 0x3f
                    val utf16 = p[0].toInt() and 0x80 != 0
                    if (1 + langLen > p.size) continue
                    return String(p, 1 + langLen, p.size - 1 - langLen, if (utf16) Charsets.UTF_16 else Charsets.UTF_8)
                }
                if (r.type.contentEquals(NdefRecord.RTD_URI)) return r.toUri()?.toString()
            }
            return null
        }
    }
}
