package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class DevicesTest {

    @Test
    void sizesReadAsBinaryUnits() {
        assertEquals(48L << 30, Devices.parseSize("48G"));
        assertEquals(48L << 30, Devices.parseSize("48GiB"));
        assertEquals(512L << 20, Devices.parseSize("512m"));
        assertEquals(3L << 39, Devices.parseSize("1.5T"));
        assertEquals(1000, Devices.parseSize("1000"));
        for (String bad : new String[] {"", "G", "-1G", "0", "12X", "1e30T"}) {
            assertThrows(IllegalArgumentException.class, () -> Devices.parseSize(bad), bad);
        }
    }

    @Test
    void theCpuIsAlwaysThere() {
        Devices.Choice c = Devices.open("cpu", 1, 0, Placement.FIT);
        try (Placement p = c.placement()) {
            assertEquals(1, p.backends().size());
            assertEquals("device: " + p.backends().get(0).description(), c.reason());
        }
    }
}
