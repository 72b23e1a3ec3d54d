package dev.nibble.runtime.chat;

import java.beans.FeatureDescriptor;
import java.util.Iterator;
import java.util.Locale;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

/** Lets templates call Python {@code str} methods on strings; everything else falls through to Jinjava's resolvers. */
final class PythonStringResolver extends ELResolver {

    @Override
    public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
        if (!(base instanceof String s) || !(method instanceof String name)) {
            return null;
        }
        Object[] args = params == null ? new Object[0] : params;
        Object result = switch (name) {
            case "strip" -> PythonStrings.strip(s, optionalString(args, 0));
            case "lstrip" -> PythonStrings.lstrip(s, optionalString(args, 0));
            case "rstrip" -> PythonStrings.rstrip(s, optionalString(args, 0));
            case "upper" -> s.toUpperCase(Locale.ROOT);
            case "lower" -> s.toLowerCase(Locale.ROOT);
            case "title" -> PythonStrings.title(s);
            case "capitalize" -> PythonStrings.capitalize(s);
            case "startswith" -> PythonStrings.startsWith(s, argument(args, 0, name));
            case "endswith" -> PythonStrings.endsWith(s, argument(args, 0, name));
            case "split" -> PythonStrings.split(s, optionalString(args, 0), optionalLong(args, 1, -1));
            case "replace" -> PythonStrings.replace(s, String.valueOf(argument(args, 0, name)),
                    String.valueOf(argument(args, 1, name)), optionalLong(args, 2, -1));
            case "find" -> (long) s.indexOf(String.valueOf(argument(args, 0, name)));
            case "join" -> PythonStrings.join(s, argument(args, 0, name));
            default -> null;
        };
        if (result != null) {
            context.setPropertyResolved(true);
        }
        return result;
    }

    private static Object argument(Object[] args, int i, String method) {
        if (i >= args.length) {
            throw new ChatTemplateException(method + "() needs at least " + (i + 1) + " argument(s)");
        }
        return args[i];
    }

    private static String optionalString(Object[] args, int i) {
        return i < args.length && args[i] != null ? String.valueOf(args[i]) : null;
    }

    private static long optionalLong(Object[] args, int i, long absent) {
        if (i >= args.length || args[i] == null) {
            return absent;
        }
        if (args[i] instanceof Number n) {
            return n.longValue();
        }
        throw new ChatTemplateException("expected a number, got " + PythonStrings.typeName(args[i]));
    }

    // Properties are left to Jinjava's own resolvers.

    @Override
    public Object getValue(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public Class<?> getType(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public void setValue(ELContext context, Object base, Object property, Object value) {
    }

    @Override
    public boolean isReadOnly(ELContext context, Object base, Object property) {
        return true;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
        return null;
    }

    @Override
    public Class<?> getCommonPropertyType(ELContext context, Object base) {
        return null;
    }
}
