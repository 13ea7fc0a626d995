"""The site config as the agent reads it: field titles and help in French (English with VIGIE_LANG=en),
rule kinds by name, and validation problems that name the field as the form shows it.

The config models (runner/config) hold the English descriptions, the bounds and the checks; this
module holds the French words for them, keyed by `Model.field` (a field whose meaning depends on its
model) or by the bare field name (the same everywhere: `id`, `enabled`, `cooldown_s`...). A test
checks every field of every config model has a French title and description, so a new field cannot
reach the forms unnamed. English titles are derived from the field name (`min_dwell_s` -> "Min dwell
(s)"), English help is the model's own description.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from runner.config.outputs import MqttOutput, Outputs, WebhookOutput
from runner.config.rules import RULE_CONFIGS_BY_KIND
from runner.config.rules.time_windows import TimeWindow
from runner.config.site import (
    Authorization,
    Calibration,
    Camera,
    Line,
    ModelSpec,
    MotionGate,
    Retention,
    SiteConfig,
    Tracking,
    Zone,
)
from workbench.i18n import add_messages, language, t
from workbench.register_data import value_label

# Every model whose fields a form or a message may name (rules come from the registry of kinds).
CONFIG_MODELS: tuple[type[BaseModel], ...] = (
    SiteConfig,
    Authorization,
    Retention,
    ModelSpec,
    Camera,
    Zone,
    Line,
    Calibration,
    Tracking,
    MotionGate,
    TimeWindow,
    Outputs,
    MqttOutput,
    WebhookOutput,
    *RULE_CONFIGS_BY_KIND.values(),
)

_ID_HELP = "Identifiant : lettres minuscules, chiffres, « - » et « _ » (63 caractères au plus)."
_LABELS = "Classes du détecteur"

# key -> (French title, French help). Keys: "Model.field" first, then "field".
FIELDS_FR: dict[str, tuple[str, str]] = {
    # -- shared by several models ---------------------------------------------------------------
    "id": ("Identifiant", _ID_HELP),
    "enabled": ("Active", "Désactivée, elle reste dans la configuration mais n'est pas évaluée."),
    "process_fps": (
        "Images évaluées par seconde",
        "Nombre d'images par seconde sur lesquelles la règle est évaluée ; vide = le besoin de son type (objet "
        "abandonné et densité de foule 1 (5 avec `foreground`), intrusion, contresens et personne au sol 5, mouvement "
        "de foule 10, "
        "incendie et arme toutes les images de la caméra), jamais plus que le `process_fps` de la caméra.",
    ),
    "cooldown_s": (
        "Délai entre deux alertes (s)",
        "Durée minimale, en secondes, entre deux alertes de cette règle pour le même sujet (piste ou zone).",
    ),
    "kind": ("Type de règle", "Le type de la règle (fixé à sa création)."),
    "model": (
        "Modèle",
        "Le modèle (une clé de `models:`) qui fournit les classes de cette règle sur sa caméra, pour toutes ses "
        "règles. Sur person_down, nommer le détecteur (ex. coco) donne la cascade : personnes du détecteur, points "
        "du squelette par le modèle de pose sur leurs découpes (pour des personnes trop petites pour lui).",
    ),
    "zone": ("Zone", "Zone surveillée (identifiant d'un polygone) ; vide = toute l'image."),
    "exclude_zones": ("Zones exclues", "Zones où rien n'est signalé (identifiants de zones)."),
    "labels": (_LABELS, "Classes du détecteur prises en compte (ex. person, car)."),
    "min_confidence": ("Confiance minimale", "Les détections sous cette confiance sont ignorées."),
    "clear_s": (
        "Retour au calme (s)",
        "Après une alerte, durée sans détection (secondes) avant que la règle puisse alerter à nouveau.",
    ),
    "sustain_s": ("Durée de maintien (s)", "Durée (secondes) pendant laquelle la condition doit durer avant l'alerte."),
    "rearm_ratio": (
        "Seuil de réarmement",
        "Après une alerte, la mesure doit redescendre sous cette fraction du seuil pour réarmer la règle.",
    ),
    "min_hit_frames": (
        "Images positives minimales",
        "Persistance : détection exigée sur au moins ce nombre des window_frames dernières images analysées.",
    ),
    "window_frames": ("Fenêtre de vote (images)", "Fenêtre de persistance, en images analysées par le modèle."),
    "min_box_area_frac": (
        "Surface minimale de la boîte",
        "Les boîtes plus petites que cette fraction de la surface de l'image sont ignorées.",
    ),
    "foreground_coef": (
        "Coefficient d'avant-plan",
        "Personnes par surface d'avant-plan de la taille d'une personne, ajusté par caméra avec "
        "`python -m runner.tools.crowd_calibrate` (1,0 = une personne par silhouette).",
    ),
    "person_height_frac": (
        "Hauteur d'une personne",
        "Hauteur d'une personne dans la zone, en fraction de la hauteur de l'image ; vide = estimée à partir "
        "des détections.",
    ),
    "active_hours": (
        "Plages horaires",
        "Plages quotidiennes (heure locale du site) où la règle est active ; vide = toujours.",
    ),
    # -- site -------------------------------------------------------------------------------------
    "SiteConfig.schema_version": (
        "Version du format",
        "Version du format de ce fichier (les migrations mettent à jour les anciens).",
    ),
    "SiteConfig.site": ("Site", "Identifiant du site (nom de son dossier sous zones/)."),
    "SiteConfig.revision": ("Révision", "Incrémentée par chaque export depuis l'atelier."),
    "SiteConfig.phase": (
        "Phase",
        "design : les alertes sont des essais et ne parviennent à personne ; operational : exige une autorisation.",
    ),
    "SiteConfig.timezone": (
        "Fuseau horaire",
        "Fuseau horaire du site (nom IANA), pour les plages horaires et les rapports.",
    ),
    "SiteConfig.authorization": ("Autorisation", "Autorisation préfectorale ; obligatoire en phase opérationnelle."),
    "SiteConfig.retention": (
        "Conservation",
        "Durée de conservation des images et des enregistrements (plafonds légaux 30 / 365 jours).",
    ),
    "SiteConfig.models": ("Modèles", "Les détecteurs, par nom."),
    "SiteConfig.cameras": ("Caméras", "Les caméras du site."),
    "SiteConfig.alert_priorities": (
        "Priorités des alertes",
        "Priorité des alertes de chaque type de règle dans la console (high, medium, low) ; les types absents "
        "gardent leur priorité par défaut (feu, arme, personne au sol : haute ; foules et objets abandonnés : "
        "moyenne ; autres : basse).",
    ),
    "SiteConfig.outputs": (
        "Sorties",
        "Où les alertes et les décisions sont poussées une fois enregistrées (courtier MQTT, webhooks).",
    ),
    "Outputs.mqtt": ("Courtier MQTT", "Courtier MQTT où les alertes sont publiées ; vide : pas de MQTT."),
    "Outputs.webhooks": ("Webhooks", "Adresses HTTP qui reçoivent chaque alerte et chaque décision (POST)."),
    "MqttOutput.host": ("Hôte du courtier", "Nom ou adresse du courtier MQTT."),
    "MqttOutput.port": ("Port du courtier", "Port TCP du courtier (1883 ; 8883 avec TLS)."),
    "MqttOutput.username": ("Utilisateur", "Nom d'utilisateur sur le courtier ; vide : anonyme."),
    "MqttOutput.password": (
        "Mot de passe",
        "Mot de passe du courtier sous forme ${VARIABLE} (ex. ${VIGIE_MQTT_PASSWORD}), jamais la valeur elle-même.",
    ),
    "MqttOutput.tls": ("TLS", "Connexion chiffrée, certificat du courtier vérifié par les autorités du système."),
    "MqttOutput.topic_prefix": (
        "Préfixe des sujets",
        "Premier niveau des sujets : les alertes vont à <préfixe>/<site>/<caméra>/<type>.",
    ),
    "MqttOutput.qos": ("Qualité de service", "Qualité de service MQTT : 1 = au moins une fois (accusé PUBACK)."),
    "MqttOutput.keepalive_s": ("Maintien de connexion (s)", "Secondes entre deux messages de maintien au courtier."),
    "MqttOutput.max_backoff_s": (
        "Attente maximale entre essais (s)",
        "Attente la plus longue (secondes) entre deux tentatives de connexion ou d'envoi.",
    ),
    "MqttOutput.include_tests": (
        "Envoyer les alertes de test",
        "Pousse aussi les alertes de test (phase de conception, rejeux), marquées is_test : seulement pour mettre "
        "au point le système récepteur ; par défaut elles ne parviennent à personne.",
    ),
    "WebhookOutput.name": ("Nom", "Nom de ce point de réception (son curseur dans le registre, sa ligne d'état)."),
    "WebhookOutput.url": (
        "Adresse",
        "Adresse qui reçoit un POST HTTP par alerte et par décision (http:// ou https:// ; ${VARIABLE} permis).",
    ),
    "WebhookOutput.secret": (
        "Secret de signature",
        "Clé HMAC-SHA256 de l'en-tête X-Vigie-Signature, sous forme ${VARIABLE} (ex. ${HOOK_SECRET}).",
    ),
    "WebhookOutput.timeout_s": ("Délai de réponse (s)", "Secondes d'attente de la réponse du point de réception."),
    "WebhookOutput.max_backoff_s": (
        "Attente maximale entre essais (s)",
        "Attente la plus longue (secondes) entre deux tentatives vers un point de réception en échec.",
    ),
    "WebhookOutput.headers": (
        "En-têtes HTTP",
        "En-têtes supplémentaires ; un identifiant (Authorization, jeton, clé) doit être une ${VARIABLE}.",
    ),
    "WebhookOutput.include_tests": (
        "Envoyer les alertes de test",
        "Pousse aussi les alertes de test (phase de conception, rejeux), marquées is_test ; par défaut elles ne "
        "parviennent à personne.",
    ),
    "Authorization.order_ref": ("Référence de l'arrêté", "Référence de l'arrêté préfectoral autorisant le traitement."),
    "Authorization.valid_from": ("Début de l'autorisation", "Début de la période autorisée (ISO 8601 avec fuseau)."),
    "Authorization.valid_to": ("Fin de l'autorisation", "Fin de la période autorisée ; l'analyse s'y arrête."),
    "Authorization.cameras": (
        "Caméras autorisées",
        "Caméras couvertes par l'arrêté ; vide = toutes les caméras du site.",
    ),
    "Retention.media_days": (
        "Conservation des images (jours)",
        "Les images et extraits des alertes sont effacés après ce nombre de jours (plafond légal : 30).",
    ),
    "Retention.alert_days": (
        "Conservation des alertes (jours)",
        "Les alertes, décisions et traces d'audit sont effacées après ce nombre de jours (plafond légal : 365).",
    ),
    "Retention.max_clock_jump_days": (
        "Saut d'horloge maximal (jours)",
        "Une purge est refusée quand l'horloge dépasse de ce nombre de jours l'enregistrement le plus récent (ou "
        "le précède), ou quand les enregistrements font un tel saut : une horloge fausse ne doit pas effacer des "
        "enregistrements légaux.",
    ),
    "Retention.purge_every_s": ("Fréquence de purge (s)", "Intervalle entre deux purges (secondes)."),
    "ModelSpec.weights": (
        "Poids du modèle",
        "Référence des poids : un chemin, un nom de fichier cherché dans VIGIE_MODELS_DIR, ou "
        "package:<module>/<fichier> dans un paquet installé. ${VAR} autorisés.",
    ),
    "ModelSpec.sha256": ("Empreinte sha256", "Empreinte sha256 attendue du fichier de poids."),
    "ModelSpec.imgsz": ("Taille d'image (px)", "Taille de l'image d'inférence, en pixels."),
    "ModelSpec.conf": ("Seuil de confiance", "Seuil de confiance du détecteur."),
    "ModelSpec.task": ("Tâche", "Tâche Ultralytics ; utile seulement pour un modèle exporté sans métadonnées."),
    "ModelSpec.classes": ("Classes", "Classes fournies par le modèle (vérifiées à son chargement)."),
    "ModelSpec.track": ("Suivi", "Envoyer les détections de ce modèle au suivi (non pour le feu ou la fumée)."),
    "ModelSpec.max_fps": (
        "Cadence maximale (images/s)",
        "Exécuter ce modèle au plus ce nombre de fois par seconde (modèles sans suivi seulement, ex. feu).",
    ),
    "ModelSpec.custom_layers": (
        "Couches personnalisées",
        "Fichier Python définissant les couches personnalisées des poids, chargé avant eux.",
    ),
    "ModelSpec.on_demand": (
        "À la demande",
        "Jamais sur chaque image : seulement quand une règle demande une nouvelle détection.",
    ),
    "ModelSpec.runtime": (
        "Exécution",
        "auto : sur CPU, un .pt est converti une fois en OpenVINO (PyTorch si la conversion échoue), sur GPU "
        "il tourne en PyTorch fp16 ; openvino : idem mais l'échec de conversion est une erreur ; torch : aucune "
        "conversion.",
    ),
    "ModelSpec.openvino_precision": (
        "Précision OpenVINO",
        "auto : la plus rapide du processeur (bf16 avec AMX) ; f32 : pleine précision.",
    ),
    # -- camera -----------------------------------------------------------------------------------
    "Camera.name": ("Nom", "Nom lisible de la caméra."),
    "Camera.source": (
        "Source vidéo",
        "Chemin d'un fichier vidéo ou URL rtsp://. Les ${VAR} gardent les identifiants hors du fichier.",
    ),
    "Camera.enabled": ("Active", "Désactivée, la caméra reste dans la configuration mais n'est pas analysée."),
    "Camera.process_fps": (
        "Images analysées par seconde (au plus)",
        "Nombre maximal d'images analysées par seconde : la caméra est analysée au rythme le plus élevé dont ses "
        "règles ont besoin (objet abandonné et densité de foule 1, densité de foule avec `foreground` 5, intrusion, "
        "contresens et personne au sol 5, "
        "mouvement de foule 10, incendie et arme toutes les images permises ; le champ `process_fps` d'une règle "
        "remplace celui de son type), sans dépasser cette valeur (les autres images sont sautées sans être décodées).",
    ),
    "Camera.loop": ("Lecture en boucle", "Relire un fichier depuis le début à sa fin (essais, démonstrations)."),
    "Camera.privacy_masks": (
        "Masques de confidentialité",
        "Polygones masqués avant l'analyse et sur chaque image conservée (fenêtres, entrées d'immeubles).",
    ),
    "Camera.calibration": (
        "Calibration au sol",
        "Quatre points de l'image et leur position au sol en mètres, pour les densités.",
    ),
    "Camera.person_height_px": (
        "Taille d'une personne (px)",
        "Hauteur en pixels d'une personne debout au fond de la zone surveillée, mesurée sur un instantané : la "
        "taille d'entrée du détecteur de personnes est augmentée (jusqu'à 1280) pour qu'elle y fasse au moins 40 px.",
    ),
    "Camera.detect_margin_frac": (
        "Marge autour des zones",
        "Chaque modèle ne regarde que le rectangle englobant les zones de ses règles, agrandi de cette fraction de "
        "l'image de chaque côté et du double vers le haut (un objet est vu et suivi avant d'entrer dans une zone, une "
        "personne debout sur son bord est entière), à l'échelle de l'image "
        "entière : moins de pixels, les mêmes détections. L'image entière quand une règle ne surveille aucune zone "
        "ou que le rectangle couvrirait plus de 80 % de l'image ; vide = toujours l'image entière (pour voir toutes "
        "les détections, par exemple pendant le réglage).",
    ),
    "Camera.tracking": ("Suivi", "Réglages du suivi des personnes et objets."),
    "Camera.motion_gate": ("Filtre de mouvement", "Pas de détection là où rien ne bouge."),
    "Camera.zones": ("Zones", "Polygones auxquels les règles se réfèrent."),
    "Camera.lines": ("Lignes", "Lignes de franchissement auxquelles les règles se réfèrent."),
    "Camera.rules": ("Règles", "Les règles d'événement évaluées sur cette caméra."),
    "Zone.polygon": ("Polygone", "Sommets du polygone, en coordonnées normalisées de l'image (0 à 1)."),
    "Zone.direction": (
        "Sens autorisé",
        "Sens de circulation autorisé (dx, dy) dans l'image, pour les règles de contresens.",
    ),
    "Line.start": ("Début de la ligne", "Première extrémité de la ligne (normalisée) ; les côtés se lisent d'ici."),
    "Line.end": ("Fin de la ligne", "Seconde extrémité de la ligne (normalisée)."),
    "Calibration.image": ("Points de l'image", "Quatre points au sol sur l'image (normalisés)."),
    "Calibration.world_m": ("Points au sol (m)", "Les mêmes quatre points au sol, en mètres."),
    "Tracking.lost_s": ("Perte de piste (s)", "Une piste non revue pendant cette durée (secondes) est close."),
    "Tracking.activation_conf": ("Confiance d'activation", "Confiance minimale pour ouvrir une nouvelle piste."),
    "Tracking.history_points": ("Historique (points)", "Points conservés par piste (mémoire bornée)."),
    "Tracking.predict_between_detections": (
        "Prédire entre deux détections",
        "Le détecteur tourne au plus haut rythme de détections que demandent les règles de la caméra (intrusion et "
        "contresens : une image sur deux des leurs, au moins 2,5 par seconde ; densité : une par seconde ; les autres "
        "règles : chacune de leurs images) et le suivi prédit la position des pistes confirmées sur les images "
        "analysées entre deux détections ; un nouvel arrivant est détecté à chaque image jusqu'à ce que sa piste soit "
        "confirmée. Désactivé : une détection à chaque image analysée.",
    ),
    "MotionGate.enabled": (
        "Actif",
        "Sauter la détection sur les images où rien n'a bougé dans les zones surveillées (les dernières "
        "détections sont reprises).",
    ),
    "MotionGate.min_changed_frac": (
        "Part de l'image modifiée",
        "Fraction de la surface surveillée qui doit avoir changé pour relancer la détection.",
    ),
    "MotionGate.max_skip_s": (
        "Détection au moins toutes les (s)",
        "Le détecteur tourne au moins à cet intervalle (secondes), mouvement ou non.",
    ),
    "TimeWindow.start": ("Début", "Début de la plage quotidienne, HH:MM heure locale."),
    "TimeWindow.end": ("Fin", "Fin de la plage quotidienne, HH:MM heure locale (avant le début = passe minuit)."),
    # -- zone_intrusion ---------------------------------------------------------------------------
    "ZoneIntrusionConfig.zone": ("Zone interdite", "Zone interdite (polygone). Donner une zone ou une ligne."),
    "ZoneIntrusionConfig.line": ("Ligne interdite", "Ligne de franchissement. Donner une zone ou une ligne."),
    "ZoneIntrusionConfig.labels": (_LABELS, "Classes du détecteur qui comptent comme intrus (ex. person, car)."),
    "ZoneIntrusionConfig.min_dwell_s": (
        "Durée minimale de présence (s)",
        "Durée pendant laquelle un objet doit rester dans la zone avant l'alerte (secondes).",
    ),
    "ZoneIntrusionConfig.clear_s": (
        "Retour au calme (s)",
        "La zone doit rester vide cette durée (secondes) avant qu'une nouvelle intrusion puisse alerter.",
    ),
    "ZoneIntrusionConfig.handover_radius_frac": (
        "Rayon de reprise de piste",
        "Une piste apparue dans la zone à cette distance (fraction de la diagonale) d'une piste perdue "
        "continue sa durée de présence (changement d'identifiant du suivi) ; 0 désactive.",
    ),
    "ZoneIntrusionConfig.crossing": (
        "Sens de franchissement interdit",
        "Sens interdit de franchissement de la ligne, vu en marchant de son début vers sa fin.",
    ),
    "ZoneIntrusionConfig.crossing_margin_frac": (
        "Marge de franchissement",
        "Un point plus proche de la ligne que cette fraction de l'image garde son côté précédent (anti-tremblement).",
    ),
    # -- wrong_way --------------------------------------------------------------------------------
    "WrongWayConfig.zone": ("Voie", "Zone de circulation ; elle doit avoir une flèche de sens autorisé."),
    "WrongWayConfig.labels": (_LABELS, "Classes du détecteur contrôlées (ex. person, car, bicycle)."),
    "WrongWayConfig.min_travel_frac": (
        "Déplacement minimal",
        "Déplacement minimal sur window_s, en fraction de la diagonale de l'image, pour être en mouvement.",
    ),
    "WrongWayConfig.max_angle_deg": (
        "Angle maximal (°)",
        "Un mouvement qui s'écarte de plus de cet angle du sens autorisé est à contresens (degrés).",
    ),
    "WrongWayConfig.hysteresis_deg": (
        "Hystérésis (°)",
        "Une fois à contresens, l'angle doit redescendre de cette valeur sous l'angle maximal (degrés).",
    ),
    "WrongWayConfig.window_s": ("Fenêtre de mesure (s)", "Durée sur laquelle le déplacement est mesuré (secondes)."),
    "WrongWayConfig.sustain_s": (
        "Durée de maintien (s)",
        "Durée pendant laquelle le contresens doit durer avant l'alerte (secondes).",
    ),
    # -- crowd_density ----------------------------------------------------------------------------
    "CrowdDensityConfig.zone": ("Zone mesurée", "Zone dont la densité est mesurée."),
    "CrowdDensityConfig.labels": (_LABELS, "Classes du détecteur comptées comme des personnes."),
    "CrowdDensityConfig.max_per_m2": (
        "Densité maximale (pers./m²)",
        "Alerte au-delà de ce nombre de personnes par mètre carré (exige la calibration au sol).",
    ),
    "CrowdDensityConfig.max_count": (
        "Effectif maximal",
        "Alerte au-delà de ce nombre de personnes détectées dans la zone (sans calibration).",
    ),
    "CrowdDensityConfig.sustain_s": (
        "Durée de maintien (s)",
        "La médiane sur cette fenêtre (secondes) doit dépasser le seuil.",
    ),
    "CrowdDensityConfig.tiled_every_s": (
        "Comptage agrandi toutes les (s)",
        "Compter aussi sur la zone agrandie tile_scale fois à cet intervalle (trouve les petites silhouettes) ; "
        "vide = jamais.",
    ),
    "CrowdDensityConfig.tile_pass": (
        "Mode d'agrandissement",
        "Une inférence sur toute la zone agrandie quand le modèle l'accepte, sinon grid : tuiles carrées "
        "qui se chevauchent.",
    ),
    "CrowdDensityConfig.tile_scale": ("Facteur d'agrandissement", "Agrandissement des tuiles."),
    "CrowdDensityConfig.tile_overlap_frac": (
        "Recouvrement des tuiles",
        "Recouvrement entre tuiles voisines (fraction d'une tuile).",
    ),
    "FireConfig.hit_confidence": (
        "Confiance des détections qui comptent",
        "La persistance compte les détections de flammes jusqu'à cette confiance, dès que la région en a une au "
        "moins à la confiance minimale (la confiance du modèle varie d'une image à l'autre sur un vrai feu).",
    ),
    "FireConfig.min_history_s": (
        "Historique avant de juger (s)",
        "Juger dès que les images gardées couvrent cette durée après le démarrage d'une caméra ; en deçà des 3/4 "
        "de la fenêtre de scintillement, le scintillement exigé augmente en proportion.",
    ),
    "FireConfig.flicker_contrast": (
        "Contraste de scintillement",
        "Le scintillement de la région doit aussi valoir ce multiple de celui du reste de l'image (une caméra qui "
        "bouge change tous les pixels de façon irrégulière).",
    ),
    "FireConfig.low_fps_interval_s": (
        "Intervalle d'une caméra lente (s)",
        "Des images espacées d'au moins cette durée (time-lapse, flux d'instantanés) sont trop lentes pour le "
        "scintillement : une région est confirmée par sa croissance, ou parce qu'elle change d'image en image "
        "en restant en place (une lampe fixe ne change pas).",
    ),
    "CrowdDensityConfig.density_every_s": (
        "Carte de densité toutes les (s)",
        "Compter aussi avec un modèle de carte de densité (CSRNet) à cet intervalle : foules serrées vues sous "
        "tout angle, ~100-200 ms par passage sur CPU ; vide = jamais (le modèle n'est pas chargé).",
    ),
    "CrowdDensityConfig.density_model": (
        "Modèle de carte de densité",
        "IR OpenVINO (.xml ou son dossier) ; vide = CSRNet du paquet csrnet, converti dans le cache des modèles "
        "au premier usage.",
    ),
    "CrowdDensityConfig.density_width_px": (
        "Largeur pour la carte de densité (px)",
        "Largeur à laquelle l'image est ramenée pour la carte de densité (son coût et son plancher croissent avec).",
    ),
    "CrowdDensityConfig.density_floor": (
        "Plancher de la carte de densité",
        "Ce que la carte lit sur la zone vide (crowd_calibrate --density --empty) ; vide = 0,005 par cellule.",
    ),
    "CrowdDensityConfig.density_scale": (
        "Échelle de la carte de densité",
        "Personnes par tête comptée au-dessus du plancher (crowd_calibrate --density, ou --heads sur une image) ; "
        "1,0 = la carte telle quelle.",
    ),
    "CrowdDensityConfig.foreground": (
        "Estimation par l'avant-plan",
        "Estimer aussi l'effectif sans détections, à partir de la surface d'avant-plan (foules serrées).",
    ),
    "CrowdDensityConfig.foreground_history_s": (
        "Mémoire du fond (s)",
        "Mémoire du modèle de fond (secondes) : une foule immobile plus longtemps s'y fond.",
    ),
    # -- crowd_movement ---------------------------------------------------------------------------
    "CrowdMovementConfig.zone": ("Zone surveillée", "Zone surveillée ; vide = toute l'image."),
    "CrowdMovementConfig.labels": (_LABELS, "Classes du détecteur qui sont des personnes."),
    "CrowdMovementConfig.speed_window_s": (
        "Fenêtre de vitesse (s)",
        "La vitesse d'une personne est son déplacement sur cette durée (hauteurs de corps par seconde).",
    ),
    "CrowdMovementConfig.fast_speed_bh_per_s": (
        "Vitesse rapide (hauteurs/s)",
        "Au-delà de ce nombre de hauteurs de corps par seconde, une personne est « rapide » (marche 0,5 à 1, "
        "course 2 à 4).",
    ),
    "CrowdMovementConfig.min_people": (
        "Effectif minimal",
        "Nombre minimal de personnes suivies dans la zone pour que la part de personnes rapides compte.",
    ),
    "CrowdMovementConfig.sustain_s": (
        "Durée de maintien (s)",
        "Le niveau est la médiane de la part sur cette fenêtre (secondes).",
    ),
    "CrowdMovementConfig.baseline_s": (
        "Durée de référence (s)",
        "La référence est la part médiane sur cette durée avant la fenêtre du niveau (secondes).",
    ),
    "CrowdMovementConfig.min_baseline_s": (
        "Référence minimale (s)",
        "Secondes de référence nécessaires avant qu'une hausse puisse alerter.",
    ),
    "CrowdMovementConfig.min_rise": (
        "Hausse minimale",
        "La part de personnes rapides doit dépasser sa référence d'au moins cette valeur (0,3 = 30 points).",
    ),
    "CrowdMovementConfig.rise_mads": (
        "Hausse en écarts robustes",
        "… et d'au moins ce nombre d'écarts absolus médians (MAD) de la référence.",
    ),
    "CrowdMovementConfig.absolute_fast_share": (
        "Part rapide absolue",
        "Une part de personnes rapides égale ou supérieure alerte quelle que soit la référence (vide = jamais).",
    ),
    "CrowdMovementConfig.rearm_ratio": (
        "Seuil de réarmement",
        "Après une alerte, la part doit redescendre sous cette fraction du seuil absolu pour réarmer.",
    ),
    "CrowdMovementConfig.flow": (
        "Flux optique",
        "Flux optique dense pour les foules serrées : off ; auto = quand la zone compte bien plus de personnes "
        "que de pistes ; on = toujours.",
    ),
    "CrowdMovementConfig.flow_fast_speed_bh_per_s": (
        "Flux rapide (hauteurs/s)",
        "Un flux plus rapide (hauteurs de corps par seconde) est « rapide » dans une zone serrée.",
    ),
    "CrowdMovementConfig.flow_absolute_share": (
        "Part de flux absolue",
        "Une part de la zone en mouvement rapide égale ou supérieure alerte (vide = jamais).",
    ),
    "CrowdMovementConfig.flow_min_rise": (
        "Hausse minimale du flux",
        "La part de flux doit dépasser sa référence d'au moins cette valeur.",
    ),
    "CrowdMovementConfig.flow_min_people": (
        "Effectif minimal (flux)",
        "Nombre minimal de personnes dans la zone (surfaces d'avant-plan) pour que le flux alerte.",
    ),
    "CrowdMovementConfig.packed_track_ratio": (
        "Seuil de foule serrée",
        "flow auto : la zone est serrée tant que ses pistes sont moins que cette fraction de ses personnes "
        "d'avant-plan.",
    ),
    # -- abandoned_object -------------------------------------------------------------------------
    "AbandonedObjectConfig.zone": ("Zone surveillée", "Zone surveillée ; vide = toute l'image."),
    "AbandonedObjectConfig.exclude_zones": (
        "Zones exclues",
        "Zones où rien n'est signalé : mobilier, poubelles, enseignes, arrêts de trains ou de bus.",
    ),
    "AbandonedObjectConfig.labels": (
        _LABELS,
        "Classes du détecteur qui comptent comme objets laissés (sacs, valises).",
    ),
    "AbandonedObjectConfig.min_confidence": (
        "Confiance minimale",
        "Les objets détectés sous cette confiance sont ignorés.",
    ),
    "AbandonedObjectConfig.person_labels": (
        "Classes des personnes",
        "Classes du détecteur qui sont des personnes (propriétaires, passants).",
    ),
    "AbandonedObjectConfig.person_min_confidence": (
        "Confiance minimale (personnes)",
        "Les personnes détectées au-dessus de cette confiance surveillent les objets et masquent l'étage statique.",
    ),
    "AbandonedObjectConfig.abandon_s": (
        "Délai d'abandon (s)",
        "Durée pendant laquelle un objet doit rester immobile sans personne à côté avant l'alerte (secondes).",
    ),
    "AbandonedObjectConfig.owner_radius_heights": (
        "Rayon du propriétaire (hauteurs)",
        "Une personne dont les pieds sont à cette distance de l'objet, en hauteurs de cette personne, le surveille.",
    ),
    "AbandonedObjectConfig.walk_speed_heights_per_s": (
        "Vitesse de passage (hauteurs/s)",
        "Une personne proche qui va plus vite passe son chemin et ne surveille pas l'objet.",
    ),
    "AbandonedObjectConfig.still_tolerance_sizes": (
        "Tolérance d'immobilité",
        "Un objet peut se décaler de cette fraction de sa taille et rester le même objet immobile.",
    ),
    "AbandonedObjectConfig.memory_s": ("Mémoire (s)", "Un objet non revu pendant cette durée est oublié (secondes)."),
    "AbandonedObjectConfig.min_seen_ratio": (
        "Part d'images vues",
        "L'objet doit avoir été vu sur au moins cette part des images depuis qu'il a été laissé.",
    ),
    "AbandonedObjectConfig.static_stage": (
        "Étage statique",
        "Trouver aussi les objets sans le détecteur : régions différentes du fond à long terme mais stables "
        "à court terme.",
    ),
    "AbandonedObjectConfig.static_width_px": (
        "Largeur de travail (px)",
        "Largeur de l'image en gris de l'étage statique (pixels).",
    ),
    "AbandonedObjectConfig.static_long_s": (
        "Fond à long terme (s)",
        "Constante de temps du fond à long terme (secondes).",
    ),
    "AbandonedObjectConfig.static_short_s": (
        "Fond à court terme (s)",
        "Constante de temps du fond à court terme (secondes).",
    ),
    "AbandonedObjectConfig.static_diff_threshold": (
        "Seuil de différence",
        "Écart de niveau de gris (0 à 255) au fond à long terme qui compte comme avant-plan.",
    ),
    "AbandonedObjectConfig.static_min_area_frac": (
        "Surface statique minimale",
        "Plus petite région statique signalée, en fraction de l'image.",
    ),
    "AbandonedObjectConfig.static_max_area_frac": (
        "Surface statique maximale",
        "Plus grande région statique signalée, en fraction de l'image (un train ou un bus arrêté est plus grand).",
    ),
    "AbandonedObjectConfig.static_absorb_s": (
        "Absorption dans le fond (s)",
        "Une région statique plus ancienne devient du fond (secondes) ; doit dépasser le délai d'abandon.",
    ),
    "AbandonedObjectConfig.static_owner_s": (
        "Porteur vu depuis (s)",
        "Une région trouvée par le seul étage statique n'est un objet laissé que si une personne a été vue "
        "dessus ou à côté au plus cette durée avant (secondes) ; vide = pas de contrôle.",
    ),
    "AbandonedObjectConfig.static_ignore_labels": (
        "Classes ignorées",
        "Les régions statiques sur des détections de ces classes (véhicules, mobilier) ne sont pas des objets laissés.",
    ),
    # -- fire -------------------------------------------------------------------------------------
    "FireConfig.zone": (
        "Zone surveillée",
        "Seules comptent les régions centrées dans cette zone ; vide = toute l'image.",
    ),
    "FireConfig.exclude_zones": (
        "Zones exclues",
        "Zones couvrant des sources lumineuses connues (enseignes, lampes, gyrophares).",
    ),
    "FireConfig.labels": ("Classes de flammes", "Classes du modèle de feu qui désignent des flammes."),
    "FireConfig.min_confidence": ("Confiance minimale", "Les flammes détectées sous cette confiance sont ignorées."),
    "FireConfig.smoke": (
        "Fumée",
        "Alerter aussi sur la fumée (peu fiable avec le modèle disponible : désactivé par défaut).",
    ),
    "FireConfig.smoke_labels": ("Classes de fumée", "Classes du modèle de feu qui désignent de la fumée."),
    "FireConfig.smoke_min_confidence": (
        "Confiance minimale (fumée)",
        "Les fumées détectées sous cette confiance sont ignorées.",
    ),
    "FireConfig.confirm_by_flicker": (
        "Confirmer par le scintillement",
        "Exiger aussi un scintillement irrégulier ou une croissance de la région (écarte enseignes et gyrophares).",
    ),
    "FireConfig.min_flicker_frac": (
        "Scintillement minimal",
        "Variation de luminosité médiane des pixels couleur flamme, en fraction de la pleine luminosité "
        "(enseigne au néon 0 à 0,024 ; flammes 0,054 à 0,24).",
    ),
    "FireConfig.min_growth_ratio": (
        "Croissance minimale",
        "Ou : la surface couleur flamme a crû de ce facteur sur la fenêtre (un feu qui s'étend) ; vide = "
        "scintillement seul.",
    ),
    "FireConfig.flicker_window_s": (
        "Fenêtre de scintillement (s)",
        "Fenêtre des statistiques de scintillement et de croissance (secondes).",
    ),
    "FireConfig.min_duration_s": (
        "Durée minimale (s)",
        "Une région doit avoir été détectée sur place cette durée (secondes) avant de pouvoir alerter.",
    ),
    "FireConfig.clear_s": (
        "Retour au calme (s)",
        "Après une alerte, le feu doit être resté non détecté cette durée (secondes) avant une nouvelle alerte.",
    ),
    # -- weapon -----------------------------------------------------------------------------------
    "WeaponConfig.zone": (
        "Zone surveillée",
        "Seules comptent les armes centrées dans cette zone ; vide = toute l'image.",
    ),
    "WeaponConfig.labels": (
        "Classes d'armes",
        "Classes d'armes, dont au moins une fournie par un modèle (COCO : knife).",
    ),
    "WeaponConfig.extra_labels": (
        "Classes d'armes supplémentaires",
        "Autres classes d'armes, utilisées si un modèle les fournit.",
    ),
    "WeaponConfig.min_confidence": ("Confiance minimale", "Les armes détectées sous cette confiance sont ignorées."),
    "WeaponConfig.max_box_area_frac": (
        "Surface maximale de la boîte",
        "Les boîtes plus grandes que cette fraction de l'image sont ignorées (une arme tenue couvre bien "
        "moins de 5 % de l'image).",
    ),
    "WeaponConfig.crop_pad_frac": (
        "Marge du recadrage",
        "Le recadrage conservé avec l'alerte élargit la boîte de l'arme de cette fraction de sa taille.",
    ),
    # -- person_down ------------------------------------------------------------------------------
    "PersonDownConfig.zone": (
        "Zone surveillée",
        "Seules les personnes dont les pieds sont dans cette zone ; vide = toute l'image.",
    ),
    "PersonDownConfig.exclude_zones": (
        "Zones exclues",
        "Zones où être allongé est normal (bancs, plage, lits) : personne n'y déclenche d'alerte.",
    ),
    "PersonDownConfig.labels": (_LABELS, "Classes du modèle de pose (17 points COCO) qui sont des personnes."),
    "PersonDownConfig.down_s": (
        "Durée au sol (s)",
        "Durée (secondes) pendant laquelle une personne doit rester au sol avant l'alerte.",
    ),
    "PersonDownConfig.min_down_frames": (
        "Images au sol minimales",
        "Au moins ce nombre d'images analysées doivent dire « au sol ».",
    ),
    "PersonDownConfig.min_down_share": (
        "Part d'images au sol",
        "Part des images où la personne est vue qui doivent dire « au sol ».",
    ),
    "PersonDownConfig.hold_s": (
        "Mémoire d'une chute (s)",
        "Une chute possible sans nouvel indice pendant cette durée est oubliée (secondes).",
    ),
    "PersonDownConfig.lying_angle_deg": (
        "Angle allongé (°)",
        "Axe du corps au moins à cet angle de la verticale pour être allongé (degrés).",
    ),
    "PersonDownConfig.lying_min_aspect": (
        "Rapport allongé",
        "Largeur / hauteur de la boîte au moins égale pour être allongé.",
    ),
    "PersonDownConfig.upright_angle_deg": (
        "Angle debout (°)",
        "Axe du corps dans cet angle de la verticale, dans une boîte haute : debout (degrés).",
    ),
    "PersonDownConfig.spot_wide_aspect": (
        "Rapport au lieu de chute",
        "Là où une chute a déjà été vue, une boîte autant de fois plus large que haute compte « au sol ».",
    ),
    "PersonDownConfig.tilt_angle_deg": (
        "Angle de bascule (°)",
        "Une personne vue debout qui disparaît juste après avoir basculé au-delà de cet angle est cherchée au sol.",
    ),
    "PersonDownConfig.upright_memory_s": (
        "Vue debout depuis (s)",
        "La personne disparue doit avoir été vue debout au plus cette durée avant (secondes).",
    ),
    "PersonDownConfig.require_fall": (
        "Seulement après une chute",
        "N'alerter que si la personne a été vue debout, puis au sol rapidement, et y reste immobile ; décoché : "
        "toute personne allongée immobile (endroit où personne ne s'allonge volontairement).",
    ),
    "PersonDownConfig.fall_window_s": (
        "Durée d'une chute (s)",
        "Une chute va de la dernière vue debout à « au sol » en au plus cette durée (secondes).",
    ),
    "PersonDownConfig.fall_min_drop": (
        "Descente des hanches (hauteurs)",
        "Dans une chute, les hanches descendent au moins de cette fraction de la hauteur debout (une personne assise "
        "qui s'allonge, ou qui fait des abdominaux, garde les hanches au sol).",
    ),
    "PersonDownConfig.fall_head_speed": (
        "Vitesse de la tête (hauteurs/s)",
        "…ou la tête descend d'au moins 0,3 hauteur à cette vitesse ou plus (hauteurs debout par seconde).",
    ),
    "PersonDownConfig.still_max_rise": (
        "Remontée tolérée (hauteurs)",
        "Au sol, la tête ne doit pas remonter de plus que cette fraction de la hauteur debout (abdominaux, pompes, "
        "se rasseoir) ; sinon la chute est annulée.",
    ),
    "PersonDownConfig.keypoint_min_confidence": (
        "Confiance des points clés",
        "Les points clés sous cette confiance ne sont pas utilisés.",
    ),
    "PersonDownConfig.search_radius_heights": (
        "Rayon de recherche (hauteurs)",
        "Demi-largeur de la zone fouillée autour d'une personne disparue, en hauteurs debout.",
    ),
    "PersonDownConfig.redetect_max_per_s": (
        "Nouvelles détections max. (/s)",
        "Au plus ce nombre de nouvelles détections par seconde sur une image tournée de 90° ; 0 désactive.",
    ),
    "PersonDownConfig.fall_labels": (
        "Classes de chute",
        "Classes d'un modèle de chute optionnel, second indice autour d'une personne disparue ; vide désactive.",
    ),
    "PersonDownConfig.fall_min_confidence": (
        "Confiance minimale (chute)",
        "Les boîtes du modèle de chute sous cette confiance sont ignorées.",
    ),
    "PersonDownConfig.fall_max_per_s": (
        "Modèle de chute max. (/s)",
        "Au plus ce nombre d'exécutions du modèle de chute par seconde, seulement pendant une recherche.",
    ),
}

# The values of choice fields as the agent reads them ("field.value"); the config keeps the value itself.
CHOICES: dict[str, dict[str, str]] = {
    "fr": {
        "phase.design": "conception (alertes d'essai)",
        "phase.operational": "opérationnelle",
        "crossing.any": "dans les deux sens",
        "crossing.left_to_right": "de gauche à droite",
        "crossing.right_to_left": "de droite à gauche",
        "tile_pass.enlarged": "zone agrandie",
        "tile_pass.grid": "grille de tuiles",
        "flow.off": "désactivé",
        "flow.auto": "automatique",
        "flow.on": "toujours",
        "runtime.auto": "automatique",
        "openvino_precision.auto": "automatique",
        "openvino_precision.f32": "pleine précision (f32)",
    },
    "en": {
        "phase.design": "design (test alerts)",
        "crossing.any": "either way",
        "crossing.left_to_right": "left to right",
        "crossing.right_to_left": "right to left",
    },
}


def choice_label(name: str, value: object) -> str:
    """A choice field's value as the agent reads it ("de gauche à droite" for crossing: left_to_right).

    Args:
        name: the field's name.
        value: one of its values.

    Returns:
        Its label in the current language; the value itself when none is written (model names, "torch").
    """
    return CHOICES[language()].get(f"{name}.{value}") or str(value)


_UNITS = {"_s": "s", "_m": "m", "_deg": "°", "_px": "px", "_m2": "m²", "_days": "days"}


def _entry(model: type[BaseModel] | None, name: str) -> tuple[str, str] | None:
    """The French words of a field: its model's, else the shared ones, else (model unknown, as in a
    nested path) those of the first model that has a field of that name."""
    found = FIELDS_FR.get(f"{model.__name__}.{name}") if model is not None else None
    found = found or FIELDS_FR.get(name)
    return found or next((words for key, words in FIELDS_FR.items() if key.endswith(f".{name}")), None)


def _english_title(name: str) -> str:
    """`min_dwell_s` -> "Min dwell (s)": the name in words, its unit suffix in brackets."""
    for suffix, unit in _UNITS.items():
        if name.endswith(suffix):
            return f"{name[: -len(suffix)].replace('_', ' ').capitalize()} ({unit})"
    return name.replace("_", " ").capitalize()


def field_title(model: type[BaseModel], name: str) -> str:
    """The field's label in the current language.

    Args:
        model: the config model holding the field.
        name: the field's name.

    Returns:
        The French title (the field name itself when the table lacks it), or the English one derived from the name.
    """
    if language() == "en":
        return _english_title(name)
    entry = _entry(model, name)
    return entry[0] if entry else name


def field_help(model: type[BaseModel], name: str) -> str:
    """The field's help text in the current language.

    Args:
        model: the config model holding the field.
        name: the field's name.

    Returns:
        The French description from the table, else (and in English) the model's own description; '' if none.
    """
    entry = _entry(model, name) if language() != "en" else None
    if entry:
        return entry[1]
    info = model.model_fields.get(name)
    return (info.description or "") if info else ""


def kind_title(kind: str) -> str:
    """A rule kind as the agent names it ("Intrusion en zone interdite"), from the register's vocabulary.

    Args:
        kind: a rule kind such as "zone_intrusion".

    Returns:
        Its name in the current language; the kind itself when unknown.
    """
    return value_label("kind", kind)


# -- validation problems in the agent's words ----------------------------------------------------------
add_messages(
    {
        "fr": {
            "place.camera": "Caméra « {id} »",
            "place.camera_n": "Caméra n°{n}",
            "place.rule": "règle « {id} »",
            "place.rule_n": "règle n°{n}",
            "place.zone": "zone « {id} »",
            "place.zone_n": "zone n°{n}",
            "place.line": "ligne « {id} »",
            "place.line_n": "ligne n°{n}",
            "place.mask": "masque n°{n}",
            "place.model": "modèle « {id} »",
            "place.point": "point {n}",
            "place.vertex": "sommet {n}",
            "place.item": "élément {n}",
            "place.window": "plage {n}",
            "place.site": "Site",
            "problem.separator": " : ",
        },
        "en": {
            "place.camera": "Camera '{id}'",
            "place.camera_n": "Camera #{n}",
            "place.rule": "rule '{id}'",
            "place.rule_n": "rule #{n}",
            "place.zone": "zone '{id}'",
            "place.zone_n": "zone #{n}",
            "place.line": "line '{id}'",
            "place.line_n": "line #{n}",
            "place.mask": "mask #{n}",
            "place.model": "model '{id}'",
            "place.point": "point {n}",
            "place.vertex": "vertex {n}",
            "place.item": "item {n}",
            "place.window": "window {n}",
            "place.site": "Site",
            "problem.separator": ": ",
        },
    }
)

# The runner's English messages (runner.config.loading._message and the models' own checks) in French.
# Ordered: the first pattern that matches the whole message wins; an unknown message stays in English.
_MESSAGES_FR: list[tuple[str, str]] = [
    (r"required", "obligatoire"),
    (r"unknown key", "clé inconnue"),
    (r"must be a valid number.*", "nombre attendu"),
    (r"must be a valid integer, got a number with a fractional part", "nombre entier attendu"),
    (r"must be a valid integer.*", "nombre entier attendu"),
    (r"must be a valid boolean.*", "oui ou non attendu"),
    (r"must be a valid string", "texte attendu"),
    (r"must be a valid (list|array|tuple).*", "liste attendue"),
    (r"must be >= (.+)", r"doit être ≥ \1"),
    (r"must be > (.+)", r"doit être > \1"),
    (r"must be <= (.+)", r"doit être ≤ \1"),
    (r"must be < (.+)", r"doit être < \1"),
    (r"must be a finite number.*", "nombre fini attendu"),
    (r"must be a multiple of (.+)", r"doit être un multiple de \1"),
    (r"must be a number of reasonable size.*", "nombre démesuré"),
    (r"must be an identifier.*", "identifiant attendu : lettres minuscules, chiffres, « - » ou « _ » (63 au plus)"),
    (r"must be 64 lower-case hexadecimal digits.*", "64 chiffres hexadécimaux minuscules attendus (un sha256)"),
    (r"must have at least (\d+) item\(s\)", r"au moins \1 élément(s)"),
    (r"must have at most (\d+) item\(s\)", r"au plus \1 élément(s)"),
    (r"must have at least (\d+) character\(s\)", r"au moins \1 caractère(s)"),
    (r"must have at most (\d+) character\(s\)", r"au plus \1 caractère(s)"),
    (r"must be a mapping.*", "dictionnaire attendu (paires clé : valeur)"),
    (r"must include a time zone offset.*", "décalage horaire attendu, ex. 2025-05-13T08:00:00+02:00"),
    (r"must be a date and time.*", "date et heure avec décalage horaire attendues, ex. 2025-05-13T08:00:00+02:00"),
    (r"must be (('[^']*'(, | or )?)+)", r"valeur attendue parmi \1"),
    (r"must not contain control characters.*", "caractères de contrôle interdits (tabulation, saut de ligne…)"),
    (r"must be after valid_from", "doit suivre le début de l'autorisation"),
    (r"must differ from start", "doit différer du début de la ligne"),
    (r"polygon has no area.*", "polygone sans surface (points alignés ou répétés)"),
    (r"direction must not be \(0, 0\)", "le sens ne peut pas être (0, 0)"),
    (r"three of the four points are collinear.*", "trois des quatre points sont alignés : pas de plan au sol"),
    (r"duplicate (camera )?id '(.+)'", r"identifiant « \2 » en double"),
    (r"unknown zone '(.+)' \(zones: (.+)\)", r"zone « \1 » inconnue (zones : \2)"),
    (r"unknown line '(.+)' \(lines: (.+)\)", r"ligne « \1 » inconnue (lignes : \2)"),
    (r"unknown camera '(.+)'", r"caméra « \1 » inconnue"),
    (r"camera '(.+)' is enabled but not covered by the authorisation", r"caméra « \1 » active mais hors autorisation"),
    (r"required when phase is operational.*", "obligatoire en phase opérationnelle (référence, début, fin)"),
    (r"unknown time zone '(.+)'", r"fuseau horaire « \1 » inconnu"),
    (r"'(.+)' is not a time of day HH:MM", r"« \1 » n'est pas une heure HH:MM"),
    (r"give exactly one of 'zone' or 'line'", "donner une zone ou une ligne, pas les deux"),
    (r"must be smaller than (\w+)", r"doit être inférieur à \1"),
    (r"must be larger than (\w+)", r"doit être supérieur à \1"),
    (r"must be below (\w+)", r"doit être inférieur à \1"),
    (r"must be at most window_frames \((\d+)\)", r"au plus la fenêtre de vote (\1)"),
    (r"must lie between (\w+) and (\w+)", r"doit être entre \1 et \2"),
    (r"must not repeat the person labels", "ne doit pas reprendre les classes des personnes"),
    (
        r"set max_per_m2 \(with a calibration\) or max_count",
        "donner une densité maximale (avec calibration) ou un effectif maximal",
    ),
    (r"needs the camera's ground calibration.*", "exige la calibration au sol de la caméra (ou un effectif maximal)"),
    (r"zone '(.+)' has no allowed direction.*", r"la zone « \1 » n'a pas de sens autorisé : tracez sa flèche"),
    (r"only untracked models .*", "seuls les modèles sans suivi peuvent tourner moins vite que la caméra"),
    (r"unknown rule kind '?([^' ]+)'? \(known: .*", r"type de règle « \1 » inconnu"),
]


def problem_message(message: str) -> str:
    """A validation message in the current language.

    Args:
        message: the runner's English message ("must be >= 0", "must be a valid number, ...").

    Returns:
        Its French wording when known (English as is).
    """
    if language() == "en":
        return message
    for pattern, french in _MESSAGES_FR:
        match = re.fullmatch(pattern, message.strip(), flags=re.DOTALL)
        if match:
            return match.expand(french).replace("' or '", "' ou '")
    return message


# The models a path step leads into: the items of a list, the fields that are config nodes themselves.
_LIST_MODELS: dict[str, type[BaseModel]] = {"cameras": Camera, "zones": Zone, "lines": Line}
_SUB_MODELS: dict[str, type[BaseModel]] = {
    "authorization": Authorization,
    "retention": Retention,
    "calibration": Calibration,
    "tracking": Tracking,
    "motion_gate": MotionGate,
}
_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _STEP.findall(path)]


def _item(items: Any, index: int) -> Mapping[str, Any]:
    if isinstance(items, list) and 0 <= index < len(items) and isinstance(items[index], Mapping):
        return items[index]
    return {}


def place(path: str, site: Mapping[str, Any] | None = None) -> str:
    """A config path as the agent sees it: `cameras[0].rules[1].min_dwell_s` -> "Caméra « parvis »,
    règle « pelouse-intrusion », Durée minimale de présence (s)".

    Args:
        path: the problem's field path, as `validation_problems` gives it ('' for the whole site).
        site: the config data the path points into (for the cameras', rules' and zones' ids and the rules' kinds).

    Returns:
        The places from the outermost in, separated by ", ".
    """
    steps = _steps(path)
    node: Any = site or {}
    model: type[BaseModel] = SiteConfig
    words: list[str] = []
    i = 0
    while i < len(steps):
        step = steps[i]
        following = steps[i + 1] if i + 1 < len(steps) else None
        if isinstance(step, int):  # an index the containing field did not consume: a list item
            words.append(t("place.item", n=step + 1))
            i += 1
            continue
        if step in ("cameras", "rules", "zones", "lines") and isinstance(following, int):
            item = _item(node.get(step) if isinstance(node, Mapping) else None, following)
            singular = step[:-1]
            item_id = item.get("id")
            words.append(t(f"place.{singular}", id=item_id) if item_id else t(f"place.{singular}_n", n=following + 1))
            node = item
            model = _LIST_MODELS.get(step) or RULE_CONFIGS_BY_KIND.get(str(item.get("kind"))) or model
            i += 2
            continue
        if step == "models" and following is not None and not isinstance(following, int):
            words.append(t("place.model", id=following))
            node, model = {}, ModelSpec
            i += 2
            continue
        if step == "privacy_masks" and isinstance(following, int):
            words.append(t("place.mask", n=following + 1))
            if i + 2 < len(steps) and isinstance(steps[i + 2], int):  # a mask is a polygon: its vertex
                steps.insert(i + 2, "polygon")
            i += 2
            continue
        if step in ("world_m", "image", "polygon") and isinstance(following, int):  # point n, axis x | y
            axis = steps[i + 2] if i + 2 < len(steps) and isinstance(steps[i + 2], int) else None
            point = t("place.vertex" if step == "polygon" else "place.point", n=following + 1)
            words.append(point + ("" if axis is None else f" ({'xy'[int(axis) % 2]})"))
            i += 3 if axis is not None else 2
            continue
        if step == "active_hours" and isinstance(following, int):
            title = field_title(model, step)
            words.append(f"{title[:1].lower() + title[1:] if words else title}, {t('place.window', n=following + 1)}")
            node, model = {}, TimeWindow
            i += 2
            continue
        sub_model = _SUB_MODELS.get(step)
        title = field_title(model, step)
        words.append(title[:1].lower() + title[1:] if words else title)  # "…, durée minimale de présence (s)"
        if sub_model is not None:
            node = node.get(step) if isinstance(node, Mapping) else {}
            model = sub_model
        i += 1
    if words:
        words[0] = words[0][:1].upper() + words[0][1:]
    return ", ".join(words) if words else t("place.site")


def describe_problem(path: str, message: str, site: Mapping[str, Any] | None = None) -> str:
    """One validation problem as one line in the agent's words.

    Args:
        path: the problem's field path ('' for the whole site).
        message: the runner's message.
        site: the config data the path points into.

    Returns:
        "Caméra « parvis », calibration, point 1 (x) : nombre attendu".
    """
    return f"{place(path, site)}{t('problem.separator')}{problem_message(message)}"


_ID_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)|\[([^\]]+)\]")


def indexed_path(path: str, site: Mapping[str, Any] | None) -> str:
    """An export diff's path, whose list items are named by id (`cameras[parvis].process_fps`), as the index
    path `place` reads (`cameras[0].process_fps`); an id the site lacks (an item added or removed) stays named.

    Args:
        path: the diff path (workbench.export.FieldChange.path).
        site: the config data the ids are looked up in.

    Returns:
        The path with every known id replaced by its index.
    """
    node: Any = site or {}
    parts: list[str] = []
    for name, key in _ID_STEP.findall(path):
        if name:
            parts.append(("." if parts else "") + name)
            node = node.get(name) if isinstance(node, Mapping) else None
            continue
        items = node if isinstance(node, list) else []
        index = next((i for i, item in enumerate(items) if isinstance(item, Mapping) and item.get("id") == key), None)
        if index is None and key.isdigit():
            index = int(key)
        parts.append(f"[{index}]" if index is not None else f"[{key}]")
        node = items[index] if index is not None and index < len(items) else {}
    return "".join(parts)


def describe_change(change: Any, site: Mapping[str, Any] | None = None) -> str:
    """One line of an export plan or of another agent's changes, in the agent's words.

    Args:
        change: a workbench.export.FieldChange (path, old, new).
        site: the config data its path points into (the newer side, where added items are).

    Returns:
        E.g. "~ Caméra « parvis », Fréquence d'analyse (img/s) : 5.0 → 2.0" (the values as in the config file).
    """
    line = change.describe()  # "+ path: new", "- path: old" or "~ path: old -> new"
    sign, rest = line[:2], line[2:]
    path_text, _, values = rest.partition(": ")
    indexed = indexed_path(path_text, site)
    if re.search(r"\[[^\]]*[^\d\]][^\]]*\]", indexed):  # an item the site no longer has: its id says it
        return line.replace(" -> ", " → ")
    where = place(indexed, site) if path_text else t("place.site")
    return f"{sign}{where}{t('problem.separator')}{values.replace(' -> ', ' → ')}"
