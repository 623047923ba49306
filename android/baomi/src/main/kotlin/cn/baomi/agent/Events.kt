package cn.baomi.agent

import java.time.Instant

/** Event JSON for the uniffi path (the core parses and validates it; no logic here). */
object Events {
    fun appInventory(atMs: Long, packages: Collection<String>) =
        obj(atMs, "app_inventory", "\"packages\":" + packages.joinToString(",", "[", "]") { str(it) })

    fun appInstalled(atMs: Long, pkg: String) = obj(atMs, "app_installed", "\"package\":${str(pkg)}")
    fun appRemoved(atMs: Long, pkg: String) = obj(atMs, "app_removed", "\"package\":${str(pkg)}")
    fun cameraOpened(atMs: Long, pkg: String) = obj(atMs, "camera_opened", "\"package\":${str(pkg)}")
    fun photoCaptured(atMs: Long, pkg: String) = obj(atMs, "photo_captured", "\"package\":${str(pkg)}")
    fun screenCaptured(atMs: Long, pkg: String) = obj(atMs, "screen_captured", "\"package\":${str(pkg)}")

    fun location(atMs: Long, lat: Double, lon: Double, accuracyM: Float) =
        obj(atMs, "location", "\"lat\":$lat,\"lon\":$lon,\"accuracy_m\":$accuracyM")

    fun wifiConnected(atMs: Long, bssid: String) = obj(atMs, "wifi_connected", "\"bssid\":${str(bssid)}")
    fun wifiDisconnected(atMs: Long) = obj(atMs, "wifi_disconnected", null)
    fun nfcTag(atMs: Long, tagHex: String) = obj(atMs, "nfc_tag", "\"tag\":${str(tagHex)}")

    private fun obj(atMs: Long, type: String, rest: String?): String {
        val at = Instant.ofEpochMilli(atMs).toString()
        return "{\"at\":\"$at\",\"type\":\"$type\"" + (rest?.let { ",$it" } ?: "") + "}"
    }

    /** A JSON string literal. */
    fun str(s: String): String {
        val b = StringBuilder(s.length + 2).append('"')
        for (c in s) {
            when {
                c == '"' -> b.append("\\\"")
                c == '\\' -> b.append("\\\\")
                c < ' ' -> b.append(String.format("\\u%04x", c.code))
                else -> b.append(c)
            }
        }
        return b.append('"').toString()
    }
}
