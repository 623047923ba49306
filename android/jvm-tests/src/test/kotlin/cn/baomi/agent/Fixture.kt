package cn.baomi.agent

import cn.baomi.core.BaomiAgent
import cn.baomi.core.BaomiException
import cn.baomi.core.Clock
import cn.baomi.core.KeyStore
import cn.baomi.core.PlatformKind
import java.io.File
import java.nio.file.Files
import java.security.SecureRandom
import javax.crypto.AEADBadTagException
import javax.crypto.Cipher
import javax.crypto.spec.GCMParameterSpec
import javax.crypto.spec.SecretKeySpec

/** Paths handed over by the Maven build (pom.xml, surefire systemPropertyVariables). */
object Paths {
    val repo = File(System.getProperty("baomi.repo"))
    val cli = System.getProperty("baomi.cli")
    val server = System.getProperty("baomi.server")
    val ffiLib = System.getProperty("baomi.ffi.lib")
}

/** A key store in Kotlin, as the Android Keystore provider is: AES-256-GCM, iv || ct. */
class JvmKeyStore(private val id: String = "jvm-test:kek-1") : KeyStore {
    private val key = ByteArray(32).also { SecureRandom().nextBytes(it) }
    var calls = 0

    override fun keyId(): String = id

    override fun wrap(dataKey: ByteArray): ByteArray {
        calls++
        val iv = ByteArray(12).also { SecureRandom().nextBytes(it) }
        val c = Cipher.getInstance("AES/GCM/NoPadding")
        c.init(Cipher.ENCRYPT_MODE, SecretKeySpec(key, "AES"), GCMParameterSpec(128, iv))
        return iv + c.doFinal(dataKey)
    }

    override fun unwrap(wrapped: ByteArray): ByteArray {
        calls++
        val c = Cipher.getInstance("AES/GCM/NoPadding")
        c.init(Cipher.DECRYPT_MODE, SecretKeySpec(key, "AES"), GCMParameterSpec(128, wrapped.copyOfRange(0, 12)))
        return try {
            c.doFinal(wrapped, 12, wrapped.size - 12)
        } catch (e: AEADBadTagException) {
            throw BaomiException.Refused("wrapped key does not open under $id")
        }
    }
}

/** A clock the test moves. */
class TestClock(var nowMs: Long = System.currentTimeMillis()) : Clock {
    override fun nowMs(): Long = nowMs
}

/** The security office, by the `baomi` CLI: keys, trust root, signed bundles. */
class Office(val dir: File = tempDir("baomi-office")) {
    val trustRoot: File = File(dir, "trust.json")

    val uploadKey: File = File(dir, "upload")

    init {
        run(Paths.cli, "keys", "new", "--out", File(dir, "office").path)
        run(Paths.cli, "keys", "new", "--out", File(dir, "registry").path)
        run(Paths.server, "upload-key", "new", "--out", uploadKey.path)
        run(
            Paths.cli, "trust", "new", "--key", File(dir, "office.pub").path, "--threshold", "1",
            "--sign-key", File(dir, "office.key").path, "--registry-key", File(dir, "registry.pub").path,
            "--upload-key", File(dir, "upload.pub").path,
            "--out", trustRoot.path,
        )
    }

    /** A registry custody record (`sign-out` or `return`) for [holder], signed. */
    fun custody(id: String, holder: String, document: String, action: String): File {
        val out = File(dir, "custody-$id.json")
        run(
            Paths.cli, "custody", "sign", "--key", File(dir, "registry.key").path, "--record-id", id,
            "--holder", holder, "--document", document, "--classification", "secret", "--action", action,
            "--out", out.path,
        )
        return out
    }

    /** The baseline policy with `device` assigned to a holder of `clearance`, signed. */
    fun bundle(device: String, clearance: String, version: Int): ByteArray = bundleFile(device, clearance, version).readBytes()

    fun bundleFile(device: String, clearance: String, version: Int): File {
        val baseline = File(Paths.repo, "policies/baseline.json").readText().trimEnd()
        val policy = baseline.removeSuffix("}").trimEnd() +
            ",\n  \"holders\": [{\"holder\": \"test-holder\", \"clearance\": \"$clearance\", \"devices\": [${Events.str(device)}]}]\n}\n"
        val p = File(dir, "policy-$version.json").apply { writeText(policy) }
        val out = File(dir, "bundle-$version.json")
        run(Paths.cli, "bundle", "sign", "--policy", p.path, "--key", File(dir, "office.key").path, "--version", "$version", "--out", out.path)
        return out
    }

    companion object {
        fun run(vararg cmd: String): String {
            val p = ProcessBuilder(*cmd).redirectErrorStream(true).start()
            val out = p.inputStream.bufferedReader().readText()
            check(p.waitFor() == 0) { "${cmd.joinToString(" ")} failed: $out" }
            return out
        }
    }
}

fun openAgent(dir: File, keys: KeyStore, clock: Clock = TestClock(), platform: PlatformKind = PlatformKind.ANDROID): BaomiAgent =
    BaomiAgent.open(dir.path, keys, platform, clock)

/** A fresh directory under the system's temporary one, removed with what is in it when the
 *  test JVM exits (the agents' stores, the servers' databases). */
fun tempDir(prefix: String): File = Files.createTempDirectory(prefix).toFile().also { TempDirs.add(it) }

private object TempDirs {
    private val dirs = java.util.Collections.synchronizedList(mutableListOf<File>())

    init {
        Runtime.getRuntime().addShutdownHook(Thread { synchronized(dirs) { dirs.forEach { it.deleteRecursively() } } })
    }

    fun add(dir: File) {
        dirs.add(dir)
    }
}

/** RFC 3339 for now + `seconds`: the agent never acts at a time before one it has seen (the
 *  bundle's signing time among them), so test events happen in the present. */
fun at(seconds: Long = 0): String = java.time.Instant.now().plusSeconds(seconds).toString()

private val AT = Regex("\"at\":\\s*\"([^\"]+)\"")

/** A recorded event stream moved to the present, in order and at its own pace. */
fun shiftedToNow(lines: List<String>): List<String> {
    val first = AT.find(lines.first())?.let { java.time.OffsetDateTime.parse(it.groupValues[1]).toInstant() }
        ?: return lines
    val shift = java.time.Duration.between(first, java.time.Instant.now())
    return lines.map { line ->
        AT.replace(line) { m -> "\"at\":\"" + java.time.OffsetDateTime.parse(m.groupValues[1]).toInstant().plus(shift) + "\"" }
    }
}

/** A real `baomi-server` on a loopback port with its own SQLite database, for [office]. */
class ServerProcess(val office: Office) : AutoCloseable {
    private val dir = tempDir("baomi-server")
    val db = "sqlite:" + File(dir, "server.db").path
    val port: Int = java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()).use { it.localPort }
    val base = "http://127.0.0.1:$port"
    private val process: Process

    init {
        admin("trust", "publish", office.trustRoot.path)
        process = ProcessBuilder(
            Paths.server, "serve", "--listen", "127.0.0.1:$port", "--db", db, "--upload-key", office.uploadKey.path, "--threads", "2",
        ).redirectErrorStream(true).redirectOutput(File(dir, "server.log")).start()
        val deadline = System.currentTimeMillis() + 20_000
        while (true) {
            val up = runCatching { java.net.Socket("127.0.0.1", port).close() }.isSuccess
            if (up) break
            check(process.isAlive) { "baomi-server exited: " + File(dir, "server.log").readText() }
            check(System.currentTimeMillis() < deadline) { "baomi-server did not listen on $port" }
            Thread.sleep(50)
        }
    }

    /** An office command on the server's database (`baomi-server ... --db`). */
    fun admin(vararg args: String): String = Office.run(Paths.server, *args, "--db", db)

    fun token(holder: String? = null): String =
        admin("token", "new", *(holder?.let { arrayOf("--holder", it) } ?: emptyArray())).trim().lines().last().trim()

    override fun close() {
        process.destroy()
        process.waitFor()
    }
}
