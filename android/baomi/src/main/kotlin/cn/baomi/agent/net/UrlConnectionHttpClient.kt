package cn.baomi.agent.net

import cn.baomi.core.BaomiException
import cn.baomi.core.HttpClient
import cn.baomi.core.HttpHeader
import cn.baomi.core.HttpReply
import java.io.ByteArrayOutputStream
import java.io.IOException
import java.io.InputStream
import java.net.HttpURLConnection
import java.net.URL

/**
 * The sync transport on java.net (on Android and on the JVM): POSTs to the compliance server
 * and hands every status back to the core, which decides. Throws only when no answer came.
 * A body over [maxBody] is cut there (the core then refuses it as malformed).
 */
class UrlConnectionHttpClient(
    baseUrl: String,
    private val timeoutMs: Int = 30_000,
    private val maxBody: Int = 2 * 1024 * 1024,
) : HttpClient {
    private val base = baseUrl.trimEnd('/')

    override fun post(path: String, headers: List<HttpHeader>, body: ByteArray): HttpReply {
        try {
            val c = URL(base + path).openConnection() as HttpURLConnection
            c.requestMethod = "POST"
            c.connectTimeout = timeoutMs
            c.readTimeout = timeoutMs
            c.doOutput = true
            headers.forEach { c.setRequestProperty(it.name, it.value) }
            c.setFixedLengthStreamingMode(body.size)
            c.outputStream.use { it.write(body) }
            val status = c.responseCode
            val stream = if (status >= 400) c.errorStream else c.inputStream
            val bytes = stream?.use { readAtMost(it, maxBody) } ?: ByteArray(0)
            return HttpReply(status.toUShort(), bytes)
        } catch (e: IOException) {
            throw BaomiException.Offline("${base}$path: ${e.message ?: e.javaClass.simpleName}")
        }
    }

    companion object {
        /** `InputStream.readNBytes` is API 33; this runs from API 26. */
        fun readAtMost(s: InputStream, max: Int): ByteArray {
            val out = ByteArrayOutputStream()
            val buf = ByteArray(16 * 1024)
            while (out.size() < max) {
                val n = s.read(buf, 0, minOf(buf.size, max - out.size()))
                if (n < 0) break
                out.write(buf, 0, n)
            }
            return out.toByteArray()
        }
    }
}
