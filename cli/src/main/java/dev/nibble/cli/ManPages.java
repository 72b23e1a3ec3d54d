package dev.nibble.cli;

import java.io.File;
import java.io.IOException;
import java.util.Map;
import picocli.CommandLine;
import picocli.codegen.docgen.manpage.ManPageGenerator;

/**
 * Writes the man pages of nibble and of each of its commands (AsciiDoc, by picocli-codegen's ManPageGenerator) into
 * the folder given, from the same command line the program runs (footers included). Run by the build, into
 * {@code cli/target/man}, where Asciidoctor's manpage backend (asciidoctor-maven-plugin, cli/pom.xml) then turns them
 * into roff in {@code cli/target/man/man1}, the pages of the release archive; picocli-codegen is needed only then, so
 * it is not in the runnable jar.
 */
public final class ManPages {

    private ManPages() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            throw new IllegalArgumentException("usage: ManPages OUTPUT_DIR");
        }
        CommandLine cl = Nibble.commandLine(Map.of());
        // The version without loading the native library, which the build need not have.
        String version = System.getProperty("nibble.version", "development build");
        cl.getCommandSpec().versionProvider(() -> new String[] {"nibble " + version});
        int code = ManPageGenerator.generateManPage(new File(args[0]), null, new boolean[0], true, cl.getCommandSpec());
        if (code != 0) {
            throw new IOException("ManPageGenerator failed with exit code " + code);
        }
    }
}
