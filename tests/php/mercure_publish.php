<?php
// Publishes one update to a Mercure hub with the real symfony/mercure
// publisher (Debian's php-symfony-mercure), as a Symfony application does,
// and prints the id the hub answered.
//
// Usage: php mercure_publish.php HUB_URL CA_FILE SECRET TOPIC DATA [private]
//
// The token is signed here the way symfony/mercure's LcobucciFactory signs
// it (HS256, a `mercure.publish` claim): the lcobucci/jwt library that
// factory needs is not packaged by Debian.

require_once 'Symfony/Component/Mercure/autoload.php';

use Symfony\Component\HttpClient\HttpClient;
use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\CallableTokenProvider;
use Symfony\Component\Mercure\Update;

[, $url, $cafile, $secret, $topic, $data] = $argv;
$private = ($argv[6] ?? '') === 'private';

function b64url(string $raw): string
{
    return rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
}

$provider = new CallableTokenProvider(function () use ($secret): string {
    $head = b64url(json_encode(['typ' => 'JWT', 'alg' => 'HS256']));
    $claims = b64url(json_encode(['mercure' => ['publish' => ['*']]]));
    $signature = b64url(hash_hmac('sha256', "$head.$claims", $secret, true));
    return "$head.$claims.$signature";
});

$client = HttpClient::create(['cafile' => $cafile]);
$hub = new Hub($url, $provider, null, null, $client);
echo $hub->publish(new Update($topic, $data, $private));
