package cn.baomi.agent

/**
 * The JNI fast path (core/ffi/src/jni_fast_path.rs): one native call per high-rate event,
 * primitives in, a packed Long out. Everything else goes through the uniffi surface.
 */
object FastPath {
    const val VERDICT_MASK = 0b11L
    const val VIOLATION = 1L shl 2
    const val POSTURE_CHANGED = 1L shl 3
    const val CAMERA_DISABLED = 1L shl 4
    const val SCREEN_CAPTURE_DISABLED = 1L shl 5

    /** Package event kinds of [packageEvent]. */
    const val LAUNCHED = 0
    const val CAMERA_OPENED = 1
    const val PHOTO_CAPTURED = 2
    const val SCREEN_CAPTURED = 3
    const val INSTALLED = 4
    const val REMOVED = 5

    @Volatile private var loaded = false

    /** Loads the library through the JVM so JNI_OnLoad runs (logging to logcat on Android). */
    @JvmStatic
    fun load(path: String? = null) {
        if (loaded) return
        synchronized(this) {
            if (loaded) return
            if (path != null) System.load(path) else System.loadLibrary("baomi_ffi")
            loaded = true
        }
    }

    @JvmStatic external fun beacon(
        handle: Long, atMs: Long, uuidHigh: Long, uuidLow: Long, major: Int, minor: Int, rssi: Int,
    ): Long

    @JvmStatic external fun packageEvent(handle: Long, atMs: Long, kind: Int, pkg: String): Long

    /** Decoded result bits. */
    data class Result(
        val verdict: Int, val violation: Boolean, val postureChanged: Boolean,
        val cameraDisabled: Boolean, val screenCaptureDisabled: Boolean,
    )

    /** `null` when the call failed (unknown handle, store failure): use the uniffi method for the error. */
    @JvmStatic
    fun decode(bits: Long): Result? = if (bits < 0) null else Result(
        verdict = (bits and VERDICT_MASK).toInt(),
        violation = bits and VIOLATION != 0L,
        postureChanged = bits and POSTURE_CHANGED != 0L,
        cameraDisabled = bits and CAMERA_DISABLED != 0L,
        screenCaptureDisabled = bits and SCREEN_CAPTURE_DISABLED != 0L,
    )
}
