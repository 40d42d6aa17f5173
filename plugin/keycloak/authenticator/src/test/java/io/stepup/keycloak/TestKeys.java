package io.stepup.keycloak;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.Signature;
import java.security.interfaces.ECPublicKey;
import java.security.interfaces.RSAPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.keycloak.jose.jwk.JSONWebKeySet;
import org.keycloak.util.JsonSerialization;

/** Test signing keys made with the JDK, their JWKs, and compact JWS signing (ES256 in JOSE R||S form). */
final class TestKeys {

    private static final Base64.Encoder B64URL = Base64.getUrlEncoder().withoutPadding();

    final String kid;
    final String alg;
    final KeyPair pair;

    private TestKeys(String kid, String alg, KeyPair pair) {
        this.kid = kid;
        this.alg = alg;
        this.pair = pair;
    }

    static TestKeys es256(String kid) {
        try {
            KeyPairGenerator generator = KeyPairGenerator.getInstance("EC");
            generator.initialize(new ECGenParameterSpec("secp256r1"));
            return new TestKeys(kid, "ES256", generator.generateKeyPair());
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    static TestKeys rs256(String kid) {
        try {
            KeyPairGenerator generator = KeyPairGenerator.getInstance("RSA");
            generator.initialize(2048);
            return new TestKeys(kid, "RS256", generator.generateKeyPair());
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The public JWK, as the bridge publishes it. */
    Map<String, Object> jwk() {
        Map<String, Object> jwk = new LinkedHashMap<>();
        jwk.put("kid", kid);
        jwk.put("use", "sig");
        jwk.put("alg", alg);
        if (pair.getPublic() instanceof ECPublicKey) {
            ECPublicKey key = (ECPublicKey) pair.getPublic();
            jwk.put("kty", "EC");
            jwk.put("crv", "P-256");
            jwk.put("x", B64URL.encodeToString(unsigned(key.getW().getAffineX(), 32)));
            jwk.put("y", B64URL.encodeToString(unsigned(key.getW().getAffineY(), 32)));
        } else {
            RSAPublicKey key = (RSAPublicKey) pair.getPublic();
            jwk.put("kty", "RSA");
            jwk.put("n", B64URL.encodeToString(unsigned(key.getModulus(), 0)));
            jwk.put("e", B64URL.encodeToString(unsigned(key.getPublicExponent(), 0)));
        }
        return jwk;
    }

    static String jwksJson(TestKeys... keys) {
        List<Map<String, Object>> list = Arrays.stream(keys).map(TestKeys::jwk).toList();
        try {
            return JsonSerialization.writeValueAsString(Map.of("keys", list));
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static JSONWebKeySet jwks(TestKeys... keys) {
        try {
            return JsonSerialization.readValue(jwksJson(keys), JSONWebKeySet.class);
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Signs {@code claims} with this key under header {alg, kid, typ}. */
    String sign(Map<String, Object> claims) {
        Map<String, Object> header = new LinkedHashMap<>();
        header.put("alg", alg);
        header.put("kid", kid);
        header.put("typ", "JWT");
        return sign(header, claims);
    }

    String sign(Map<String, Object> header, Map<String, Object> claims) {
        String input = encodeJson(header) + "." + encodeJson(claims);
        try {
            Signature signature = Signature.getInstance(alg.equals("ES256") ? "SHA256withECDSA" : "SHA256withRSA");
            signature.initSign(pair.getPrivate());
            signature.update(input.getBytes(StandardCharsets.US_ASCII));
            byte[] raw = signature.sign();
            byte[] jose = alg.equals("ES256") ? derToConcatenated(raw, 32) : raw;
            return input + "." + B64URL.encodeToString(jose);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    static String encodeJson(Map<String, Object> value) {
        try {
            return B64URL.encodeToString(JsonSerialization.writeValueAsBytes(value));
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** ASN.1 DER {@code SEQUENCE { INTEGER r, INTEGER s }} to JOSE {@code r || s}, each {@code size} bytes. */
    static byte[] derToConcatenated(byte[] der, int size) {
        int offset = 0;
        if (der[offset++] != 0x30) {
            throw new IllegalArgumentException("not a DER sequence");
        }
        offset += (der[offset] & 0x80) != 0 ? 1 + (der[offset] & 0x7f) : 1;
        byte[] out = new byte[2 * size];
        for (int part = 0; part < 2; part++) {
            if (der[offset++] != 0x02) {
                throw new IllegalArgumentException("not a DER integer");
            }
            int length = der[offset++];
            BigInteger value = new BigInteger(1, Arrays.copyOfRange(der, offset, offset + length));
            System.arraycopy(unsigned(value, size), 0, out, part * size, size);
            offset += length;
        }
        return out;
    }

    /** Big-endian unsigned bytes, left-padded to {@code size} (0: minimal length). */
    static byte[] unsigned(BigInteger value, int size) {
        byte[] bytes = value.toByteArray();
        if (bytes.length > 1 && bytes[0] == 0) {
            bytes = Arrays.copyOfRange(bytes, 1, bytes.length);
        }
        if (size == 0 || bytes.length == size) {
            return bytes;
        }
        byte[] padded = new byte[size];
        System.arraycopy(bytes, 0, padded, size - bytes.length, bytes.length);
        return padded;
    }
}
