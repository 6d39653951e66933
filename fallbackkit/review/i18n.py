"""The station's words in English, French and Dutch, chosen per user (users.lang)."""
from __future__ import annotations

from typing import Any

_EN: dict[str, Any] = {
    "app": "Review station", "login": "Log in", "logout": "Log out", "name": "Name", "password": "Password",
    "login_failed": "Name or password not recognised.",
    "login_locked": "Too many failed attempts for this name: wait 15 minutes or ask a supervisor.",
    "dashboard": "Dashboard", "queue": "Queue", "review": "Review", "conflicts": "Conflicts",
    "quarantine": "Quarantine", "identities": "Identities", "worklist": "Worklist", "decisions": "Decisions",
    "ward": "Ward", "bed": "Bed", "form": "Form", "reason": "Reason", "all": "all", "filter": "Filter",
    "printed": "Printed", "returned": "Returned", "missing": "Missing", "to_review": "To review",
    "to_reenter": "To re-enter", "entered": "Entered", "total": "Total",
    "waiting": "{n} readings wait for a person", "start_review": "Start reviewing",
    "quarantined_waiting": "{n} pages in quarantine to identify",
    "conflicts_waiting": "{n} fields where two scans disagree",
    "field": "Field", "sheet": "Sheet", "patient": "Patient", "machine_read": "Machine read",
    "nothing": "Nothing waits here.", "page": "Page", "value": "Value", "who": "Who", "when": "When",
    "decision": "Decision", "undo": "Undo", "undone": "Decision {id} undone.", "undone_mark": "undone",
    "supervisor_only": "Only a supervisor may do this.",
    "already_decided": "{who} has already decided this reading.",
    "conflict_resolved": "{field} on sheet {sheet} resolved.", "pick": "Pick this",
    "or_type": "or type the right value", "correct": "Correct", "or_pick": "or the right answer:",
    "capture": "Capture", "assign": "Identify", "sheet_id_printed": "Sheet id printed on the page",
    "assigned": "Page identified as sheet {sheet} (capture {capture}).", "file": "File",
    "untrusted_bad_signature": "Warning: the code on this page is not signed by this kit (bad_signature): "
                               "it may be forged, altered or damaged. Check the paper itself before identifying it.",
    "untrusted_foreign_kit": "Warning: the code on this page belongs to another kit (foreign_kit): it may come "
                             "from another hospital or station. Check the paper itself before identifying it.",
    "untrusted_clerk": "Only a supervisor may identify this page.",
    "assigned_untrusted": "Page quarantined as {reason} read in as sheet {sheet} (capture {capture}) on your word "
                          "as supervisor; the audit log says so.",
    "downtime_mrn": "Downtime MRN", "linked_to": "Linked to", "suggestions": "Suggestions", "link": "Link",
    "real_mrn": "Real MRN", "link_needs_both": "Give both the downtime MRN and the real MRN.",
    "linked": "{dt} linked to {real}.", "kind": "Kind", "birth_date": "Birth date", "score": "Score",
    "mark_entered": "Entered", "mark_not_needed": "Not needed", "mark_pending": "Back to pending",
    "status_entered": "entered", "status_not-needed": "not needed", "status_pending": "pending",
    "marked": "{item} marked {status}.", "values_to_type": "Values to type", "status": "Status",
    "not_resolved": "readings still to review", "care_time": "Time", "show": "Show",
    "language": "Language", "error": "Something is not right", "back": "Back",
    "whole_page": "Whole page", "open": "Open", "role_clerk": "clerk", "role_supervisor": "supervisor",
    "people": "People", "unlock": "Unlock", "locked": "locked after wrong passwords", "disabled": "disabled",
    "unlocked": "{name} can log in again.", "people_help": "A name is locked for 15 minutes after 5 wrong passwords. Check who is asking before you unlock it.",
    "no_image": "no image stored", "empty_fields": "Empty",
    "image_unavailable": "The page image cannot be shown: its scanned original is missing from the kit's archive. Ask IT to restore it.",
    "image_not_made": "The page image could not be made from its scanned original: ask IT (fallbackkit check --archive).",
    "js": {
        "accept": "Accept", "enter": "Enter", "skip": "Skip", "esc": "Esc", "illegible": "Illegible",
        "zoom": "Whole page", "z": "Alt+P", "machine": "Machine read", "why": "Why unsure",
        "codes": "Codes", "initials_legend": "Legend of this sheet", "initials_recent": "Your recent initials", "initials_previous": "as the previous dose on this row",
        "initials_most_used": "most used on this sheet", "type_here": "Type what is written", "suggested": "Suggested", "done": "Nothing left to review with these filters.",
        "blank": "blank", "ticked": "ticked", "empty": "empty", "confidence": "confidence",
        "saved": "Saved", "error": "Not saved", "type_or_illegible": "Type the value, or choose Illegible.",
        "digits": "digits pick", "patient": "Patient", "ward": "Ward", "bed": "Bed", "sheet": "Sheet",
        "page": "page", "decided_by": "Decided by", "open_page": "Open the page", "no_image": "no image stored",
        "scheduled": "scheduled", "medication": "medication", "measures": "Measurements",
        "pick_option": "The machine could not tell: pick an option with its digit.",
    },
}

_FR: dict[str, Any] = {
    "app": "Poste de vérification", "login": "Se connecter", "logout": "Se déconnecter", "name": "Nom",
    "password": "Mot de passe", "login_failed": "Nom ou mot de passe non reconnu.",
    "login_locked": "Trop d'essais pour ce nom : attendez 15 minutes ou appelez un superviseur.",
    "dashboard": "Tableau de bord", "queue": "File d'attente", "review": "Vérifier", "conflicts": "Conflits",
    "quarantine": "Quarantaine", "identities": "Identités", "worklist": "Saisie", "decisions": "Décisions",
    "ward": "Unité", "bed": "Lit", "form": "Formulaire", "reason": "Motif", "all": "tous", "filter": "Filtrer",
    "printed": "Imprimées", "returned": "Revenues", "missing": "Manquantes", "to_review": "À vérifier",
    "to_reenter": "À saisir", "entered": "Saisies", "total": "Total",
    "waiting": "{n} lectures attendent une personne", "start_review": "Commencer",
    "quarantined_waiting": "{n} pages en quarantaine à identifier",
    "conflicts_waiting": "{n} champs où deux numérisations divergent",
    "field": "Champ", "sheet": "Feuille", "patient": "Patient", "machine_read": "Lu par la machine",
    "nothing": "Rien n'attend ici.", "page": "Page", "value": "Valeur", "who": "Qui", "when": "Quand",
    "decision": "Décision", "undo": "Annuler", "undone": "Décision {id} annulée.", "undone_mark": "annulée",
    "supervisor_only": "Seul un superviseur peut faire cela.",
    "already_decided": "{who} a déjà décidé cette lecture.",
    "conflict_resolved": "{field} de la feuille {sheet} résolu.", "pick": "Choisir",
    "or_type": "ou tapez la bonne valeur", "correct": "Corriger", "or_pick": "ou la bonne réponse :",
    "capture": "Capture", "assign": "Identifier", "sheet_id_printed": "Identifiant imprimé sur la page",
    "assigned": "Page identifiée comme feuille {sheet} (capture {capture}).", "file": "Fichier",
    "untrusted_bad_signature": "Attention : le code de cette page n'est pas signé par ce kit (bad_signature) : "
                               "il peut être falsifié, modifié ou abîmé. Vérifiez le papier avant de l'identifier.",
    "untrusted_foreign_kit": "Attention : le code de cette page appartient à un autre kit (foreign_kit) : elle peut "
                             "venir d'un autre hôpital ou poste. Vérifiez le papier avant de l'identifier.",
    "untrusted_clerk": "Seul un superviseur peut identifier cette page.",
    "assigned_untrusted": "Page en quarantaine ({reason}) lue comme feuille {sheet} (capture {capture}) sur votre "
                          "parole de superviseur ; le journal d'audit l'indique.",
    "downtime_mrn": "N° patient provisoire", "linked_to": "Lié à", "suggestions": "Suggestions", "link": "Lier",
    "real_mrn": "N° patient réel", "link_needs_both": "Donnez le numéro provisoire et le numéro réel.",
    "linked": "{dt} lié à {real}.", "kind": "Type", "birth_date": "Date de naissance", "score": "Score",
    "mark_entered": "Saisi", "mark_not_needed": "Inutile", "mark_pending": "Remettre à faire",
    "status_entered": "saisi", "status_not-needed": "inutile", "status_pending": "à faire",
    "marked": "{item} marqué {status}.", "values_to_type": "Valeurs à saisir", "status": "État",
    "not_resolved": "lectures encore à vérifier", "care_time": "Heure", "show": "Afficher",
    "language": "Langue", "error": "Quelque chose ne va pas", "back": "Retour",
    "whole_page": "Page entière", "open": "Ouvrir", "role_clerk": "agent", "role_supervisor": "superviseur",
    "people": "Comptes", "unlock": "Déverrouiller", "locked": "verrouillé après des mots de passe faux", "disabled": "désactivé",
    "unlocked": "{name} peut de nouveau se connecter.", "people_help": "Un nom est verrouillé 15 minutes après 5 mots de passe faux. Vérifiez qui le demande avant de le déverrouiller.",
    "no_image": "pas d'image", "empty_fields": "Vides",
    "image_unavailable": "L'image de la page ne peut pas être affichée : son original scanné manque dans l'archive du kit. Demandez à l'informatique de le restaurer.",
    "image_not_made": "L'image de la page n'a pas pu être faite depuis son original scanné : demandez à l'informatique (fallbackkit check --archive).",
    "js": {
        "accept": "Valider", "enter": "Entrée", "skip": "Passer", "esc": "Échap", "illegible": "Illisible",
        "zoom": "Page entière", "z": "Alt+P", "machine": "Lu par la machine", "why": "Pourquoi un doute",
        "codes": "Codes", "initials_legend": "Légende de cette feuille", "initials_recent": "Vos initiales récentes", "initials_previous": "comme la dose précédente de cette ligne",
        "initials_most_used": "les plus fréquentes sur cette feuille", "type_here": "Tapez ce qui est écrit", "suggested": "Suggestion", "done": "Plus rien à vérifier avec ces filtres.",
        "blank": "vide", "ticked": "cochée", "empty": "non cochée", "confidence": "confiance",
        "saved": "Enregistré", "error": "Non enregistré", "type_or_illegible": "Tapez la valeur, ou choisissez Illisible.",
        "digits": "les chiffres choisissent", "patient": "Patient", "ward": "Unité", "bed": "Lit", "sheet": "Feuille",
        "page": "page", "decided_by": "Décidé par", "open_page": "Ouvrir la page", "no_image": "pas d'image",
        "scheduled": "prévu", "medication": "médicament", "measures": "Mesures",
        "pick_option": "La machine n'a pas pu trancher : choisissez une option avec son chiffre.",
    },
}

_NL: dict[str, Any] = {
    "app": "Controlepost", "login": "Aanmelden", "logout": "Afmelden", "name": "Naam",
    "password": "Wachtwoord", "login_failed": "Naam of wachtwoord niet herkend.",
    "login_locked": "Te veel pogingen voor deze naam: wacht 15 minuten of vraag een supervisor.",
    "dashboard": "Overzicht", "queue": "Wachtrij", "review": "Controleren", "conflicts": "Conflicten",
    "quarantine": "Quarantaine", "identities": "Identiteiten", "worklist": "Invoerlijst", "decisions": "Beslissingen",
    "ward": "Afdeling", "bed": "Bed", "form": "Formulier", "reason": "Reden", "all": "alle", "filter": "Filteren",
    "printed": "Gedrukt", "returned": "Terug", "missing": "Ontbreekt", "to_review": "Te controleren",
    "to_reenter": "In te voeren", "entered": "Ingevoerd", "total": "Totaal",
    "waiting": "{n} lezingen wachten op een mens", "start_review": "Beginnen",
    "quarantined_waiting": "{n} pagina's in quarantaine te identificeren",
    "conflicts_waiting": "{n} velden waar twee scans verschillen",
    "field": "Veld", "sheet": "Blad", "patient": "Patiënt", "machine_read": "Machinelezing",
    "nothing": "Hier wacht niets.", "page": "Pagina", "value": "Waarde", "who": "Wie", "when": "Wanneer",
    "decision": "Beslissing", "undo": "Ongedaan maken", "undone": "Beslissing {id} ongedaan gemaakt.",
    "undone_mark": "ongedaan", "supervisor_only": "Alleen een supervisor mag dit.",
    "already_decided": "{who} heeft deze lezing al beslist.",
    "conflict_resolved": "{field} op blad {sheet} opgelost.", "pick": "Kies deze",
    "or_type": "of typ de juiste waarde", "correct": "Corrigeren", "or_pick": "of het juiste antwoord:",
    "capture": "Opname", "assign": "Identificeren", "sheet_id_printed": "Bladnummer gedrukt op de pagina",
    "assigned": "Pagina geïdentificeerd als blad {sheet} (opname {capture}).", "file": "Bestand",
    "untrusted_bad_signature": "Let op: de code op deze pagina is niet door deze kit ondertekend (bad_signature): "
                               "ze kan vervalst, gewijzigd of beschadigd zijn. Controleer het papier vóór u ze identificeert.",
    "untrusted_foreign_kit": "Let op: de code op deze pagina hoort bij een andere kit (foreign_kit): ze kan van een "
                             "ander ziekenhuis of station komen. Controleer het papier vóór u ze identificeert.",
    "untrusted_clerk": "Alleen een supervisor mag deze pagina identificeren.",
    "assigned_untrusted": "Pagina in quarantaine ({reason}) ingelezen als blad {sheet} (opname {capture}) op uw "
                          "woord als supervisor; het auditlog vermeldt dit.",
    "downtime_mrn": "Tijdelijk patiëntnr.", "linked_to": "Gekoppeld aan", "suggestions": "Suggesties",
    "link": "Koppelen", "real_mrn": "Echt patiëntnr.", "link_needs_both": "Geef het tijdelijke en het echte nummer.",
    "linked": "{dt} gekoppeld aan {real}.", "kind": "Soort", "birth_date": "Geboortedatum", "score": "Score",
    "mark_entered": "Ingevoerd", "mark_not_needed": "Niet nodig", "mark_pending": "Terug naar te doen",
    "status_entered": "ingevoerd", "status_not-needed": "niet nodig", "status_pending": "te doen",
    "marked": "{item} gemarkeerd als {status}.", "values_to_type": "In te typen waarden", "status": "Status",
    "not_resolved": "lezingen nog te controleren", "care_time": "Tijd", "show": "Tonen",
    "language": "Taal", "error": "Er klopt iets niet", "back": "Terug",
    "whole_page": "Hele pagina", "open": "Openen", "role_clerk": "medewerker", "role_supervisor": "supervisor",
    "people": "Accounts", "unlock": "Ontgrendelen", "locked": "vergrendeld na foute wachtwoorden", "disabled": "uitgeschakeld",
    "unlocked": "{name} kan weer aanmelden.", "people_help": "Een naam wordt 15 minuten vergrendeld na 5 foute wachtwoorden. Controleer wie het vraagt vóór u ontgrendelt.",
    "no_image": "geen beeld", "empty_fields": "Leeg",
    "image_unavailable": "Het paginabeeld kan niet getoond worden: het gescande origineel ontbreekt in het archief van de kit. Vraag IT het terug te zetten.",
    "image_not_made": "Het paginabeeld kon niet gemaakt worden uit het gescande origineel: vraag IT (fallbackkit check --archive).",
    "js": {
        "accept": "Aanvaarden", "enter": "Enter", "skip": "Overslaan", "esc": "Esc", "illegible": "Onleesbaar",
        "zoom": "Hele pagina", "z": "Alt+P", "machine": "Machinelezing", "why": "Waarom onzeker",
        "codes": "Codes", "initials_legend": "Legende van dit blad", "initials_recent": "Uw recente initialen", "initials_previous": "zoals de vorige dosis op deze rij",
        "initials_most_used": "meest gebruikt op dit blad", "type_here": "Typ wat er staat", "suggested": "Voorstel", "done": "Niets meer te controleren met deze filters.",
        "blank": "leeg", "ticked": "aangekruist", "empty": "niet aangekruist", "confidence": "zekerheid",
        "saved": "Bewaard", "error": "Niet bewaard", "type_or_illegible": "Typ de waarde, of kies Onleesbaar.",
        "digits": "cijfers kiezen", "patient": "Patiënt", "ward": "Afdeling", "bed": "Bed", "sheet": "Blad",
        "page": "pagina", "decided_by": "Beslist door", "open_page": "Pagina openen", "no_image": "geen beeld",
        "scheduled": "gepland", "medication": "medicatie", "measures": "Metingen",
        "pick_option": "De machine kon niet beslissen: kies een optie met haar cijfer.",
    },
}

STRINGS: dict[str, dict[str, Any]] = {"en": _EN, "fr": _FR, "nl": _NL}


def t(lang: str, key: str, **kwargs: Any) -> str:
    """The string for key in lang (English when a translation is missing)."""
    text = STRINGS.get(lang, _EN).get(key) or _EN.get(key) or key
    return text.format(**kwargs) if kwargs else text


# --- issue 15 (identity check, undo, progress, conflicts per sheet, worklist, labels) ---------------
_EN.update({
    "identities_help": "Check each link against the patient in the census before you make it.",
    "on_paper": "On the paper", "in_census": "In the census", "sex": "Sex", "check_link": "Check and link",
    "check_same": "same", "check_differs": "differs", "check_partly": "partly the same",
    "check_not_a_date": "not a date", "check_unknown": "nothing to compare",
    "not_in_census": "{real} is not in the census: nothing to compare the paper with.",
    "confirm_mismatch": "The paper and the census differ (highlighted). I checked: this is the same patient.",
    "link_anyway": "Link all the same", "link_confirm_needed": "The paper and the census differ: tick the box to confirm.",
    "nosuggest_not_returned": "No suggestion: no form with this number was scanned back yet.",
    "nosuggest_waiting": "No suggestion yet: the name and birth date on its forms wait in the review queue.",
    "nosuggest_not_written": "No suggestion: no name or birth date was written on its forms.",
    "nosuggest_no_match": "No suggestion: no patient in the census is close to what the paper says.",
})
_FR.update({
    "identities_help": "Vérifiez chaque lien avec le patient du recensement avant de le faire.",
    "on_paper": "Sur le papier", "in_census": "Au recensement", "sex": "Sexe", "check_link": "Vérifier et lier",
    "check_same": "identique", "check_differs": "différent", "check_partly": "en partie identique",
    "check_not_a_date": "pas une date", "check_unknown": "rien à comparer",
    "not_in_census": "{real} n'est pas au recensement : rien à comparer avec le papier.",
    "confirm_mismatch": "Le papier et le recensement diffèrent (en surbrillance). J'ai vérifié : c'est le même patient.",
    "link_anyway": "Lier quand même", "link_confirm_needed": "Le papier et le recensement diffèrent : cochez la case pour confirmer.",
    "nosuggest_not_returned": "Pas de suggestion : aucun formulaire avec ce numéro n'a encore été scanné.",
    "nosuggest_waiting": "Pas encore de suggestion : le nom et la date de naissance attendent dans la file.",
    "nosuggest_not_written": "Pas de suggestion : ni nom ni date de naissance écrits sur ses formulaires.",
    "nosuggest_no_match": "Pas de suggestion : aucun patient du recensement ne ressemble au papier.",
})
_NL.update({
    "identities_help": "Controleer elke koppeling met de patiënt uit de census voor u koppelt.",
    "on_paper": "Op papier", "in_census": "In de census", "sex": "Geslacht", "check_link": "Controleren en koppelen",
    "check_same": "gelijk", "check_differs": "verschilt", "check_partly": "deels gelijk",
    "check_not_a_date": "geen datum", "check_unknown": "niets te vergelijken",
    "not_in_census": "{real} staat niet in de census: niets om het papier mee te vergelijken.",
    "confirm_mismatch": "Papier en census verschillen (gemarkeerd). Ik heb gecontroleerd: het is dezelfde patiënt.",
    "link_anyway": "Toch koppelen", "link_confirm_needed": "Papier en census verschillen: vink het vakje aan om te bevestigen.",
    "nosuggest_not_returned": "Geen suggestie: nog geen formulier met dit nummer gescand.",
    "nosuggest_waiting": "Nog geen suggestie: naam en geboortedatum wachten in de wachtrij.",
    "nosuggest_not_written": "Geen suggestie: geen naam of geboortedatum op de formulieren geschreven.",
    "nosuggest_no_match": "Geen suggestie: geen patiënt in de census lijkt op wat op papier staat.",
})
_EN.update({"still_open": "Still open elsewhere:", "identities_waiting": "{n} downtime MRNs to link to a real patient",
            "worklist_waiting": "{n} items to re-enter"})
_FR.update({"still_open": "Encore ouvert ailleurs :", "identities_waiting": "{n} numéros provisoires à lier à un vrai patient",
            "worklist_waiting": "{n} éléments à ressaisir"})
_NL.update({"still_open": "Elders nog open:", "identities_waiting": "{n} tijdelijke nummers te koppelen aan een echte patiënt",
            "worklist_waiting": "{n} items in te voeren"})
_EN["js"].update({
    "n_of": "Item {n} of {total}", "time_left": "about {t} left at your pace",
    "last_one": "This is the last item waiting: skipping it leaves it here.",
    "returned": "Back in the queue: {who}'s decision ({decision}: {value}) was undone by {by} at {at}",
    "undo_last": "Undo my last decision", "undone_mine": "Your last decision was undone: decide again.",
    "open_conflicts": "{n} fields where two scans disagree", "open_quarantine": "{n} pages in quarantine to identify",
    "open_identities": "{n} downtime MRNs to link", "all_clear": "Nothing else is open.",
    "open_claimed": "{n} items are on other clerks' screens: they come back here if left undecided.",
})
_FR["js"].update({
    "n_of": "Élément {n} sur {total}", "time_left": "environ {t} restantes à votre rythme",
    "last_one": "C'est le dernier élément en attente : le passer le laisse ici.",
    "returned": "De retour dans la file : la décision de {who} ({decision} : {value}) a été annulée par {by} à {at}",
    "undo_last": "Annuler ma dernière décision", "undone_mine": "Votre dernière décision est annulée : décidez à nouveau.",
    "open_conflicts": "{n} champs où deux scans divergent", "open_quarantine": "{n} pages en quarantaine à identifier",
    "open_identities": "{n} numéros provisoires à lier", "all_clear": "Rien d'autre n'est ouvert.",
    "open_claimed": "{n} éléments sont à l'écran d'autres agents : ils reviennent ici s'ils restent sans décision.",
})
_NL["js"].update({
    "n_of": "Item {n} van {total}", "time_left": "nog ongeveer {t} in uw tempo",
    "last_one": "Dit is het laatste wachtende item: overslaan laat het hier staan.",
    "returned": "Terug in de wachtrij: de beslissing van {who} ({decision}: {value}) werd ongedaan gemaakt door {by} om {at}",
    "undo_last": "Mijn laatste beslissing ongedaan maken", "undone_mine": "Uw laatste beslissing is ongedaan gemaakt: beslis opnieuw.",
    "open_conflicts": "{n} velden waar twee scans verschillen", "open_quarantine": "{n} pagina's in quarantaine te identificeren",
    "open_identities": "{n} tijdelijke nummers te koppelen", "all_clear": "Verder is niets open.",
    "open_claimed": "{n} items staan op het scherm van andere medewerkers: ze komen hier terug als er niet over beslist wordt.",
})
_EN.update({"take_scan": "Take scan {n} for the whole sheet", "field_by_field": "Field by field",
            "fields_disagree": "{n} fields disagree", "sheet_taken": "Sheet {sheet}: {n} fields settled from one scan.",
            "sheet_left": "Left open, to decide field by field (unsure or not typed yet on that scan): {fields}.", "field_resolved": "{field} on sheet {sheet} resolved.",
            "conflicts_keys": "Digit 1, 2… takes that scan for the whole sheet; Enter on a button picks it; Tab moves on."})
_FR.update({"take_scan": "Prendre le scan {n} pour toute la feuille", "field_by_field": "Champ par champ",
            "fields_disagree": "{n} champs divergent", "sheet_taken": "Feuille {sheet} : {n} champs réglés d'après un scan.",
            "sheet_left": "Restent ouverts, à décider champ par champ (incertains ou pas encore tapés sur ce scan) : {fields}.", "field_resolved": "{field} de la feuille {sheet} réglé.",
            "conflicts_keys": "Le chiffre 1, 2… prend ce scan pour toute la feuille ; Entrée sur un bouton le choisit ; Tab avance."})
_NL.update({"take_scan": "Scan {n} nemen voor het hele blad", "field_by_field": "Veld per veld",
            "fields_disagree": "{n} velden verschillen", "sheet_taken": "Blad {sheet}: {n} velden beslist volgens één scan.",
            "sheet_left": "Blijven open, veld per veld te beslissen (onzeker of nog niet getypt op die scan): {fields}.", "field_resolved": "{field} op blad {sheet} beslist.",
            "conflicts_keys": "Cijfer 1, 2… neemt die scan voor het hele blad; Enter op een knop kiest hem; Tab gaat verder."})
_EN.update({"worklist_keys": "J / K: next / previous item · Shift+J / Shift+K: next / previous patient · E: entered · N: not needed",
            "worklist_count": "{items} items for {patients} patients", "worklist_more": "{n} more items of this patient: show them all", "n_pending": "{n} to enter",
            "name_unknown": "name not known yet", "kind_registration": "Registration", "kind_order": "Lab order",
            "kind_result": "Result", "kind_medication": "Medication", "kind_vitals": "Vital signs"})
_FR.update({"worklist_keys": "J / K : élément suivant / précédent · Maj+J / Maj+K : patient suivant / précédent · E : saisi · N : inutile",
            "worklist_count": "{items} éléments pour {patients} patients", "worklist_more": "{n} éléments de plus pour ce patient : tout afficher", "n_pending": "{n} à saisir",
            "name_unknown": "nom pas encore connu", "kind_registration": "Admission", "kind_order": "Demande de labo",
            "kind_result": "Résultat", "kind_medication": "Médicament", "kind_vitals": "Paramètres vitaux"})
_NL.update({"worklist_keys": "J / K: volgend / vorig item · Shift+J / Shift+K: volgende / vorige patiënt · E: ingevoerd · N: niet nodig",
            "worklist_count": "{items} items voor {patients} patiënten", "worklist_more": "nog {n} items van deze patiënt: alles tonen", "n_pending": "{n} in te voeren",
            "name_unknown": "naam nog niet bekend", "kind_registration": "Opname", "kind_order": "Labo-aanvraag",
            "kind_result": "Resultaat", "kind_medication": "Medicatie", "kind_vitals": "Vitale parameters"})
_EN.update({"implausible": "Implausible: {reason}. Check the paper; press Enter again to keep it (the reason is recorded)."})
_FR.update({"implausible": "Peu plausible : {reason}. Vérifiez le papier ; Entrée encore pour le garder (la raison est notée)."})
_NL.update({"implausible": "Onwaarschijnlijk: {reason}. Controleer het papier; nog eens Enter om het te houden (de reden wordt bewaard)."})
_EN["js"].update({"decision_confirm": "confirmed", "decision_correct": "corrected", "decision_transcribe": "typed",
                  "decision_illegible": "illegible"})
_FR["js"].update({"decision_confirm": "confirmé", "decision_correct": "corrigé", "decision_transcribe": "tapé",
                  "decision_illegible": "illisible"})
_NL["js"].update({"decision_confirm": "bevestigd", "decision_correct": "verbeterd", "decision_transcribe": "getypt",
                  "decision_illegible": "onleesbaar"})
# zoom on the crop, or on the whole page while it is shown (Alt with + / - / 0: they work while typing)
_EN["js"].update({"zoom_in": "Zoom in", "zoom_out": "Zoom out", "zoom_reset": "Actual size", "zoom_in_key": "Alt++",
                  "zoom_out_key": "Alt+−", "zoom_reset_key": "Alt+0", "zoom_crop": "Field {p}%", "zoom_page": "Page {p}%"})
_FR["js"].update({"zoom_in": "Agrandir", "zoom_out": "Réduire", "zoom_reset": "Taille normale", "zoom_in_key": "Alt++",
                  "zoom_out_key": "Alt+−", "zoom_reset_key": "Alt+0", "zoom_crop": "Champ {p} %", "zoom_page": "Page {p} %"})
_NL["js"].update({"zoom_in": "Inzoomen", "zoom_out": "Uitzoomen", "zoom_reset": "Ware grootte", "zoom_in_key": "Alt++",
                  "zoom_out_key": "Alt+−", "zoom_reset_key": "Alt+0", "zoom_crop": "Veld {p}%", "zoom_page": "Pagina {p}%"})


# Why a reading waits for a person (codes of fallbackkit.scan.reasons) and why a page was put aside.
REASONS: dict[str, dict[str, str]] = {
    "en": {
        "faint_mark": "faint mark", "half_outside": "mark half outside the box",
        "ambiguous_mark": "faint or ambiguous mark", "two_marked": "two options marked",
        "n_marked": "{n} options marked", "mark_and_cancelled": "a mark next to a cancelled box", "corrected": "corrected on paper",
        "to_transcribe": "to transcribe", "faint_writing": "faint marks in the field", "image_only": "kept as image only",
        "covered": "covered or not visible", "weak_corner": "near a missing corner mark",
        "poor_fit": "poor page fit ({mm} mm)", "low_contrast": "low contrast page ({levels} grey levels)",
        "page_dark": "page mostly dark ({percent}%)",
        "page_covered": "part of the page covered or folded ({covered} of {fields} fields)",
        "unknown_type": "unknown field type '{type}'",
        "no_code": "no sheet code could be read", "bad_signature": "the sheet code's signature is wrong",
        "foreign_kit": "printed by another kit", "unknown_sheet": "not in this kit's registry of printed sheets",
        "no_marks": "the corner squares could not be found", "unreadable": "the reader failed on this page",
    },
    "fr": {
        "faint_mark": "marque pâle", "half_outside": "marque à moitié hors de la case",
        "ambiguous_mark": "marque pâle ou ambiguë", "two_marked": "deux options cochées",
        "n_marked": "{n} options cochées", "mark_and_cancelled": "une marque à côté d'une case annulée", "corrected": "corrigé sur le papier",
        "to_transcribe": "à transcrire", "faint_writing": "traces pâles dans le champ", "image_only": "gardé en image seulement",
        "covered": "couvert ou illisible", "weak_corner": "près d'un repère de coin manquant",
        "poor_fit": "page mal alignée ({mm} mm)", "low_contrast": "page peu contrastée ({levels} niveaux de gris)",
        "page_dark": "page en grande partie sombre ({percent} %)",
        "page_covered": "une partie de la page couverte ou pliée ({covered} champs sur {fields})",
        "unknown_type": "type de champ inconnu '{type}'",
        "no_code": "aucun code de feuille lisible", "bad_signature": "la signature du code de la feuille est fausse",
        "foreign_kit": "imprimée par un autre kit", "unknown_sheet": "absente du registre des feuilles imprimées",
        "no_marks": "les carrés des coins sont introuvables", "unreadable": "le lecteur a échoué sur cette page",
    },
    "nl": {
        "faint_mark": "vage markering", "half_outside": "markering half buiten het vakje",
        "ambiguous_mark": "vage of onduidelijke markering", "two_marked": "twee opties aangekruist",
        "n_marked": "{n} opties aangekruist", "mark_and_cancelled": "een markering naast een geannuleerd vakje", "corrected": "op papier verbeterd",
        "to_transcribe": "over te typen", "faint_writing": "vage sporen in het veld", "image_only": "alleen als beeld bewaard",
        "covered": "bedekt of niet zichtbaar", "weak_corner": "bij een ontbrekend hoekmerk",
        "poor_fit": "pagina slecht uitgelijnd ({mm} mm)", "low_contrast": "pagina met weinig contrast ({levels} grijswaarden)",
        "page_dark": "pagina grotendeels donker ({percent}%)",
        "page_covered": "deel van de pagina bedekt of gevouwen ({covered} van {fields} velden)",
        "unknown_type": "onbekend veldtype '{type}'",
        "no_code": "geen bladcode leesbaar", "bad_signature": "de handtekening van de bladcode klopt niet",
        "foreign_kit": "gedrukt door een andere kit", "unknown_sheet": "niet in het register van gedrukte bladen",
        "no_marks": "de hoekvierkanten zijn niet gevonden", "unreadable": "de lezer faalde op deze pagina",
    },
}


# a code named without its parameters (the queue's filter): most sentences drop their "(… {mm} mm)"
_LABELS = {"n_marked": {"en": "several options marked", "fr": "plusieurs options cochées",
                        "nl": "meerdere opties aangekruist"}}


def reason_label(lang: str, code: str) -> str:
    """One reason code in the user's language without parameters ("poor page fit", "page mal alignée")."""
    import re
    if code in _LABELS:
        return _LABELS[code].get(lang) or _LABELS[code]["en"]
    text = REASONS.get(lang, REASONS["en"]).get(code) or REASONS["en"].get(code) or code
    text = re.sub(r"\s*\([^()]*\{\w+\}[^()]*\)", "", text)
    return re.sub(r"\s*'?\{\w+\}'?", "", text).strip()


def reason_text(lang: str, reason: str | None) -> str:
    """A stored reason (a reading's "; "-joined reasons, or a quarantine code) in the user's language:
    each part by its code and parameters; a part that is no known code is shown as stored."""
    from ..scan.reasons import parse
    if not reason:
        return ""
    table = REASONS.get(lang, REASONS["en"])
    if reason in REASONS["en"]:  # a code alone: a quarantine reason, or a filter by a reading's reason
        return reason_label(lang, reason)
    out = []
    for r in parse(reason):
        code, params = r["code"], dict(r["params"])
        if code == "other":
            out.append(params["text"])
            continue
        option = params.pop("option", None)
        text = (table.get(code) or REASONS["en"][code]).format(**params)
        out.append(f"{text} ({option})" if option else text)
    return "; ".join(out)
# comb boxes (issue 10): the machine's sure digits in the box, the clerk types the boxes left open
_EN["js"].update({"comb_todo": "Type the highlighted boxes (Space: a box left empty), then Enter.",
                  "comb_full": "Every box is filled: Enter saves, Backspace or ← corrects, Delete clears all.",
                  "comb_gap": "An empty box between digits: type it, or Delete to start again.",
                  "comb_digits": "Digits only here (the separators are printed). Illegible: Alt+I.",
                  "comb_key": "grey: read by the machine · white: typed by you · orange: type these",
                  "comb_keys": "Enter saves · Backspace / ← → correct · Delete clears all",
                  "comb_blank": "All boxes empty: Enter saves blank",
                  "comb_label": "Boxes of {field}"})
_FR["js"].update({"comb_todo": "Tapez les cases surlignées (Espace : case laissée vide), puis Entrée.",
                  "comb_full": "Toutes les cases sont remplies : Entrée enregistre, Retour arrière ou ← corrige, Suppr efface tout.",
                  "comb_gap": "Une case vide entre des chiffres : tapez-la, ou Suppr pour recommencer.",
                  "comb_digits": "Chiffres seulement (les séparateurs sont imprimés). Illisible : Alt+I.",
                  "comb_key": "gris : lu par la machine · blanc : tapé par vous · orange : à taper",
                  "comb_keys": "Entrée enregistre · Retour arrière / ← → corrigent · Suppr efface tout",
                  "comb_blank": "Toutes les cases vides : Entrée enregistre vide",
                  "comb_label": "Cases de {field}"})
_NL["js"].update({"comb_todo": "Typ de gemarkeerde vakjes (spatie: vakje leeg gelaten), dan Enter.",
                  "comb_full": "Alle vakjes zijn gevuld: Enter bewaart, Backspace of ← verbetert, Delete wist alles.",
                  "comb_gap": "Een leeg vakje tussen cijfers: typ het, of Delete om opnieuw te beginnen.",
                  "comb_digits": "Alleen cijfers (de scheidingstekens staan gedrukt). Onleesbaar: Alt+I.",
                  "comb_key": "grijs: gelezen door de machine · wit: door u getypt · oranje: te typen",
                  "comb_keys": "Enter bewaart · Backspace / ← → verbeteren · Delete wist alles",
                  "comb_blank": "Alle vakjes leeg: Enter bewaart leeg",
                  "comb_label": "Vakjes van {field}"})
# the decisions screen: the digit suggestion a decision was made on
_EN.update({"machine_suggested": "Machine suggested", "prefilled_0": "not pre-filled", "prefilled_1": "pre-filled",
            "prefilled_2": "sure digits pre-filled", "outcome_accepted": "accepted",
            "outcome_completed": "completed (pre-filled digits kept)", "outcome_corrected": "corrected"})
_FR.update({"machine_suggested": "Suggestion de la machine", "prefilled_0": "non pré-rempli", "prefilled_1": "pré-rempli",
            "prefilled_2": "chiffres sûrs pré-remplis", "outcome_accepted": "acceptée",
            "outcome_completed": "complétée (chiffres pré-remplis gardés)", "outcome_corrected": "corrigée"})
_NL.update({"machine_suggested": "Voorstel van de machine", "prefilled_0": "niet vooraf ingevuld", "prefilled_1": "vooraf ingevuld",
            "prefilled_2": "zekere cijfers vooraf ingevuld", "outcome_accepted": "aanvaard",
            "outcome_completed": "aangevuld (vooraf ingevulde cijfers behouden)", "outcome_corrected": "verbeterd"})
_EN["js"].update({"legend_first": "The sheet's legend (Nurses on this sheet), before its slots: typed once, each slot's initials are then one key."})
_FR["js"].update({"legend_first": "La légende de la feuille (infirmiers de cette feuille), avant ses créneaux : tapée une fois, les initiales de chaque créneau sont ensuite une touche."})
_NL["js"].update({"legend_first": "De legende van het blad (verpleegkundigen op dit blad), vóór de tijdvakken: één keer getypt, zijn de initialen van elk tijdvak daarna één toets."})


# A quarantined page's detail (codes of fallbackkit.scan.reasons.DETAILS, parameters as stored in
# quarantine.detail_codes). {why} is a detail in turn, {mark} / {marks} corner marks by name.
DETAILS: dict[str, dict[str, str]] = {
    "en": {
        "no_code_found": "no readable sheet code on the page",
        "not_our_qr": "a QR code was found but it is not a fallbackkit sheet code ({text})",
        "other_kit": "the sheet belongs to another kit ({kit}; this kit is {this_kit})",
        "two_codes": "two different sheet codes on one page",
        "not_registered": "sheet {sheet} is not in this kit's registry of printed sheets",
        "marks_after_code": "the code was read but the corner marks were not: {why}",
        "marks_not_found": "corner marks not found: {why}",
        "scanned_mirrored": "the code of sheet {sheet} reads mirrored and as dark as print: a page scanned mirrored?"
                            " Scan it again",
        "back_with_writing": "the back of sheet {sheet} (its code shows through the paper), with writing on it:"
                             " look at the paper",
        "back_with_ink": "the back of sheet {sheet} (page {page}, its front shows through the paper) with ink on it"
                         " that the front does not explain ({mm} mm mark): something was written on the back?"
                         " Look at the paper",
        "cover_back_with_ink": "the back of the ward pack's cover sheet (page {page}, its front shows through the"
                               " paper) with ink on it that the front does not explain ({mm} mm mark): something"
                               " was written on the back? Look at the paper",
        "reader_failed": "technical error, for IT: {error}",
        "not_sheet_code": "not a fallbackkit sheet code",
        "malformed_code": "malformed fallbackkit sheet code",
        "page_out_of_range": "malformed fallbackkit sheet code (page out of range)",
        "code_other_kit": "the sheet belongs to another kit ({kit}; this kit is {this_kit})",
        "signature_fails": "the sheet code's signature does not verify (forged or damaged code)",
        "not_cover_code": "not a fallbackkit cover code",
        "malformed_cover": "malformed fallbackkit cover code",
        "cover_other_kit": "cover sheet of another kit ({kit}; this kit is {this_kit})",
        "cover_signature_fails": "the cover code's signature does not verify (forged or damaged code)",
        "marks_missing": "corner marks {marks} not found where the code puts them",
        "mark_missing": "corner mark {mark} not found where the code puts it, and the other three do not agree"
                        " with the code",
        "no_outline": "no four marks found that make a page outline of the right size",
        "marks_disagree": "the corner marks and the code disagree by {mm} mm: a mark is missing or the sheet is"
                          " folded",
        "fewer_marks": "fewer than four corner marks found",
        "marks_not_in_corners": "corner marks not found in the four corners of the image",
        "marks_sizes": "corner marks of different sizes: not the four marks of one sheet",
        "hole_unclear": "the holed corner mark (bottom right) cannot be told apart",
        "not_an_outline": "the corner marks do not form a page outline",
        "page_shape": "the corner marks give an implausible page shape",
        "hole_elsewhere": "the holed corner mark is {mark}, not bottom right: the marks disagree with the code",
    },
    "fr": {
        "no_code_found": "aucun code de feuille lisible sur la page",
        "not_our_qr": "un code QR a été trouvé, mais ce n'est pas un code de feuille fallbackkit ({text})",
        "other_kit": "la feuille appartient à un autre kit ({kit} ; ce kit est {this_kit})",
        "two_codes": "deux codes de feuille différents sur une même page",
        "not_registered": "la feuille {sheet} n'est pas dans le registre des feuilles imprimées de ce kit",
        "marks_after_code": "le code a été lu, mais pas les repères de coin : {why}",
        "marks_not_found": "repères de coin introuvables : {why}",
        "scanned_mirrored": "le code de la feuille {sheet} se lit en miroir et aussi foncé que l'impression : une"
                            " page numérisée en miroir ? Numérisez-la à nouveau",
        "back_with_writing": "le verso de la feuille {sheet} (son code se voit par transparence), avec de"
                             " l'écriture : regardez le papier",
        "back_with_ink": "le verso de la feuille {sheet} (page {page}, son recto se voit par transparence) porte de"
                         " l'encre que le recto n'explique pas (trait de {mm} mm) : quelque chose a été écrit au"
                         " verso ? Regardez le papier",
        "cover_back_with_ink": "le verso de la page de garde du paquet de l'unité (page {page}, son recto se voit"
                               " par transparence) porte de l'encre que le recto n'explique pas (trait de {mm} mm) :"
                               " quelque chose a été écrit au verso ? Regardez le papier",
        "reader_failed": "erreur technique, pour l'informatique : {error}",
        "not_sheet_code": "ce n'est pas un code de feuille fallbackkit",
        "malformed_code": "code de feuille fallbackkit mal formé",
        "page_out_of_range": "code de feuille fallbackkit mal formé (numéro de page hors limites)",
        "code_other_kit": "la feuille appartient à un autre kit ({kit} ; ce kit est {this_kit})",
        "signature_fails": "la signature du code de la feuille est fausse (code falsifié ou abîmé)",
        "not_cover_code": "ce n'est pas un code de page de garde fallbackkit",
        "malformed_cover": "code de page de garde fallbackkit mal formé",
        "cover_other_kit": "page de garde d'un autre kit ({kit} ; ce kit est {this_kit})",
        "cover_signature_fails": "la signature du code de la page de garde est fausse (code falsifié ou abîmé)",
        "marks_missing": "repères de coin {marks} introuvables là où le code les place",
        "mark_missing": "repère de coin {mark} introuvable là où le code le place, et les trois autres ne"
                        " concordent pas avec le code",
        "no_outline": "aucun groupe de quatre repères ne forme le contour d'une page de la bonne taille",
        "marks_disagree": "les repères de coin et le code divergent de {mm} mm : un repère manque ou la feuille est"
                          " pliée",
        "fewer_marks": "moins de quatre repères de coin trouvés",
        "marks_not_in_corners": "repères de coin introuvables dans les quatre coins de l'image",
        "marks_sizes": "repères de coin de tailles différentes : pas les quatre repères d'une même feuille",
        "hole_unclear": "le repère de coin évidé (en bas à droite) ne se distingue pas",
        "not_an_outline": "les repères de coin ne forment pas le contour d'une page",
        "page_shape": "les repères de coin donnent une forme de page invraisemblable",
        "hole_elsewhere": "le repère de coin évidé est {mark}, pas en bas à droite : les repères contredisent le code",
    },
    "nl": {
        "no_code_found": "geen leesbare bladcode op de pagina",
        "not_our_qr": "er is een QR-code gevonden, maar het is geen bladcode van fallbackkit ({text})",
        "other_kit": "het blad hoort bij een andere kit ({kit}; deze kit is {this_kit})",
        "two_codes": "twee verschillende bladcodes op één pagina",
        "not_registered": "blad {sheet} staat niet in het register van gedrukte bladen van deze kit",
        "marks_after_code": "de code is gelezen, maar de hoekmerken niet: {why}",
        "marks_not_found": "hoekmerken niet gevonden: {why}",
        "scanned_mirrored": "de code van blad {sheet} leest gespiegeld en is zo donker als drukwerk: een gespiegeld"
                            " gescande pagina? Scan ze opnieuw",
        "back_with_writing": "de achterkant van blad {sheet} (de code schijnt door het papier), met schrift erop:"
                             " bekijk het papier",
        "back_with_ink": "de achterkant van blad {sheet} (pagina {page}, de voorkant schijnt door het papier) met"
                         " inkt die de voorkant niet verklaart (streep van {mm} mm): is er iets op de achterkant"
                         " geschreven? Bekijk het papier",
        "cover_back_with_ink": "de achterkant van het voorblad van het afdelingspakket (pagina {page}, de voorkant"
                               " schijnt door het papier) met inkt die de voorkant niet verklaart (streep van {mm}"
                               " mm): is er iets op de achterkant geschreven? Bekijk het papier",
        "reader_failed": "technische fout, voor IT: {error}",
        "not_sheet_code": "geen bladcode van fallbackkit",
        "malformed_code": "misvormde bladcode van fallbackkit",
        "page_out_of_range": "misvormde bladcode van fallbackkit (paginanummer buiten bereik)",
        "code_other_kit": "het blad hoort bij een andere kit ({kit}; deze kit is {this_kit})",
        "signature_fails": "de handtekening van de bladcode klopt niet (vervalste of beschadigde code)",
        "not_cover_code": "geen voorbladcode van fallbackkit",
        "malformed_cover": "misvormde voorbladcode van fallbackkit",
        "cover_other_kit": "voorblad van een andere kit ({kit}; deze kit is {this_kit})",
        "cover_signature_fails": "de handtekening van de voorbladcode klopt niet (vervalste of beschadigde code)",
        "marks_missing": "hoekmerken {marks} niet gevonden waar de code ze plaatst",
        "mark_missing": "hoekmerk {mark} niet gevonden waar de code het plaatst, en de andere drie kloppen niet"
                        " met de code",
        "no_outline": "geen vier merken gevonden die de omtrek van een pagina van de juiste grootte vormen",
        "marks_disagree": "de hoekmerken en de code verschillen {mm} mm: er ontbreekt een merk of het blad is"
                          " gevouwen",
        "fewer_marks": "minder dan vier hoekmerken gevonden",
        "marks_not_in_corners": "hoekmerken niet gevonden in de vier hoeken van het beeld",
        "marks_sizes": "hoekmerken van verschillende grootte: niet de vier merken van één blad",
        "hole_unclear": "het holle hoekmerk (rechtsonder) is niet te onderscheiden",
        "not_an_outline": "de hoekmerken vormen geen omtrek van een pagina",
        "page_shape": "de hoekmerken geven een onwaarschijnlijke paginavorm",
        "hole_elsewhere": "het holle hoekmerk staat {mark}, niet rechtsonder: de merken spreken de code tegen",
    },
}
MARK_NAMES: dict[str, dict[str, str]] = {
    "en": {"tl": "top left", "tr": "top right", "br": "bottom right", "bl": "bottom left", "and": "and"},
    "fr": {"tl": "en haut à gauche", "tr": "en haut à droite", "br": "en bas à droite", "bl": "en bas à gauche",
           "and": "et"},
    "nl": {"tl": "linksboven", "tr": "rechtsboven", "br": "rechtsonder", "bl": "linksonder", "and": "en"},
}


def _marks_text(lang: str, value: str) -> str:
    from ..scan.reasons import mark_keys
    names = MARK_NAMES.get(lang, MARK_NAMES["en"])
    keys = [names[k] for k in mark_keys(value)]
    if not keys:
        return value
    return keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} {names['and']} {keys[-1]}"


def detail_text(lang: str, detail: Any) -> str:
    """A quarantined page's detail in the user's language: its stored codes (a dict, as in
    quarantine.detail_codes), or else its English text, parsed. A text no code knows is shown as stored."""
    from ..scan.reasons import parse_detail
    if detail is None or detail == "":
        return ""
    parsed = parse_detail(detail) if isinstance(detail, str) else detail
    code, params = parsed.get("code"), dict(parsed.get("params") or {})
    table = DETAILS.get(lang, DETAILS["en"])
    sentence = table.get(code) or DETAILS["en"].get(code)
    if sentence is None:  # "other": an older wording, or a code of a later version
        return str(params.get("text", ""))
    for name, value in params.items():
        if name == "why":
            params[name] = detail_text(lang, value)
        elif name in ("mark", "marks"):
            params[name] = _marks_text(lang, value)
    try:
        return sentence.format(**params)
    except (KeyError, IndexError):
        return str(parsed)


# why a clerk's identification of a quarantined page was refused (fallbackkit.scan.assign: exc.said)
_EN.update({"assign_not_a_sheet_id": "“{typed}” is not a valid sheet id: it is the 9 characters printed under the"
                                     " QR code, the last one a check character. Read it again.",
            "assign_supervisor_only_page": "Page {page} may be forged or from another kit: only a supervisor may read"
                                           " it in, after checking the paper.",
            "assign_already_assigned": "Page {page} is already identified as sheet {sheet} (capture {capture}).",
            "assign_no_such_sheet": "There is no sheet {sheet} in this kit: check the sheet id.",
            "assign_cannot_read_as": "Page {page} cannot be read as sheet {sheet}: {reason} ({detail}). Check the"
                                     " sheet id; if it is right, the page must be entered by hand."})
_FR.update({"assign_not_a_sheet_id": "« {typed} » n'est pas un identifiant de feuille valable : ce sont les 9"
                                     " caractères imprimés sous le code QR, le dernier étant un caractère de"
                                     " contrôle. Relisez-le.",
            "assign_supervisor_only_page": "La page {page} est peut-être falsifiée ou d'un autre kit : seul un"
                                           " superviseur peut l'identifier, après avoir vérifié le papier.",
            "assign_already_assigned": "La page {page} est déjà identifiée comme feuille {sheet} (capture {capture}).",
            "assign_no_such_sheet": "Ce kit n'a pas de feuille {sheet} : vérifiez l'identifiant.",
            "assign_cannot_read_as": "La page {page} ne peut pas être lue comme feuille {sheet} : {reason} ({detail})."
                                     " Vérifiez l'identifiant ; s'il est juste, la page doit être saisie à la main."})
_NL.update({"assign_not_a_sheet_id": "“{typed}” is geen geldige bladcode: het zijn de 9 tekens onder de QR-code,"
                                     " het laatste is een controleteken. Lees ze opnieuw.",
            "assign_supervisor_only_page": "Pagina {page} is misschien vervalst of van een andere kit: alleen een"
                                           " supervisor mag ze identificeren, na controle van het papier.",
            "assign_already_assigned": "Pagina {page} is al geïdentificeerd als blad {sheet} (capture {capture}).",
            "assign_no_such_sheet": "Deze kit heeft geen blad {sheet}: controleer de bladcode.",
            "assign_cannot_read_as": "Pagina {page} kan niet gelezen worden als blad {sheet}: {reason} ({detail})."
                                     " Controleer de bladcode; als ze juist is, moet de pagina met de hand"
                                     " ingevoerd worden."})


def assign_error(lang: str, code: str, params: dict[str, Any]) -> str:
    """A refused identification of a quarantined page, in the user's language."""
    params = dict(params)
    if code == "cannot_read_as":
        params["reason"] = reason_text(lang, params.get("reason"))
        params["detail"] = detail_text(lang, params.get("detail"))
    return t(lang, "assign_" + code, **params)
_EN.update({"self_undo_note": "undone by the person who decided it"})
_FR.update({"self_undo_note": "annulée par la personne qui l'avait prise"})
_NL.update({"self_undo_note": "ongedaan gemaakt door wie ze genomen had"})
# the colon after a label: French puts a (non-breaking) space before it
_EN["js"].update({"colon": ": "})
_FR["js"].update({"colon": "\u00a0: "})
_NL["js"].update({"colon": ": "})

# a patient's sex, as the paper (the template's option values) or the census (F, M, X, U) gives it
_SEX = {"female": "female", "f": "female", "male": "male", "m": "male", "other": "other", "x": "other",
        "unknown": "unknown", "u": "unknown"}
_EN.update({"sex_female": "female", "sex_male": "male", "sex_other": "X", "sex_unknown": "unknown"})
_FR.update({"sex_female": "féminin", "sex_male": "masculin", "sex_other": "X", "sex_unknown": "inconnu"})
_NL.update({"sex_female": "vrouwelijk", "sex_male": "mannelijk", "sex_other": "X", "sex_unknown": "onbekend"})


def sex_text(lang: str, value: Any) -> str:
    """A sex from the paper or the census in the user's language; any other value as stored."""
    if value is None or value == "":
        return ""
    code = _SEX.get(str(value).strip().lower())
    return t(lang, "sex_" + code) if code else str(value)
# a decision's kind on the Decisions screen (reviews.decision)
_EN.update({"decided_confirm": "confirmed", "decided_correct": "corrected", "decided_transcribe": "typed",
            "decided_illegible": "illegible", "decided_undo": "undo of"})
_FR.update({"decided_confirm": "confirmé", "decided_correct": "corrigé", "decided_transcribe": "tapé",
            "decided_illegible": "illisible", "decided_undo": "annulation de"})
_NL.update({"decided_confirm": "bevestigd", "decided_correct": "verbeterd", "decided_transcribe": "getypt",
            "decided_illegible": "onleesbaar", "decided_undo": "ongedaan maken van"})

# what is wrong with a typed value (fallbackkit.templates.values.ValueProblem codes; {text}: what was typed)
VALUE_PROBLEMS: dict[str, dict[str, str]] = {
    "en": {"out_of_range": "{text} is outside the plausible range {low}-{high}",
           "date_out_of_window": "{text} is outside {earliest} – {latest}",
           "not_a_number": "“{text}” is not a number", "not_a_date": "“{text}” is not a date (day/month/year)",
           "two_digit_year": "date “{text}” has a two-digit year: write the year in full",
           "no_such_date": "“{text}” is not a calendar date", "date_too_early": "date “{text}” is before {earliest}",
           "not_a_time": "“{text}” is not a time (hours:minutes)",
           "no_such_time": "“{text}” is not a time of day (00:00-23:59)",
           "not_a_datetime": "“{text}” is not a date and time"},
    "fr": {"out_of_range": "{text} est hors de la plage plausible {low}-{high}",
           "date_out_of_window": "{text} est hors de la période {earliest} – {latest}",
           "not_a_number": "« {text} » n'est pas un nombre", "not_a_date": "« {text} » n'est pas une date (jour/mois/année)",
           "two_digit_year": "la date « {text} » a une année à deux chiffres : écrivez l'année en entier",
           "no_such_date": "« {text} » n'est pas une date du calendrier",
           "date_too_early": "la date « {text} » est avant {earliest}",
           "not_a_time": "« {text} » n'est pas une heure (heures:minutes)",
           "no_such_time": "« {text} » n'est pas une heure de la journée (00:00-23:59)",
           "not_a_datetime": "« {text} » n'est pas une date et une heure"},
    "nl": {"out_of_range": "{text} valt buiten het plausibele bereik {low}-{high}",
           "date_out_of_window": "{text} valt buiten {earliest} – {latest}",
           "not_a_number": "“{text}” is geen getal", "not_a_date": "“{text}” is geen datum (dag/maand/jaar)",
           "two_digit_year": "datum “{text}” heeft een jaartal van twee cijfers: schrijf het jaar volledig",
           "no_such_date": "“{text}” is geen kalenderdatum", "date_too_early": "datum “{text}” ligt voor {earliest}",
           "not_a_time": "“{text}” is geen tijd (uren:minuten)",
           "no_such_time": "“{text}” is geen tijdstip van de dag (00:00-23:59)",
           "not_a_datetime": "“{text}” is geen datum en tijd"},
}
_EN.update({"typed_hint": "type it as written on the paper, or choose Illegible"})
_FR.update({"typed_hint": "tapez-le comme sur le papier, ou choisissez Illisible"})
_NL.update({"typed_hint": "typ het zoals op het papier, of kies Onleesbaar"})


def value_problem_text(lang: str, problem: Any) -> str | None:
    """A ValueProblem in the user's language; None for a code without a sentence here."""
    if problem is None:
        return None
    sentence = VALUE_PROBLEMS.get(lang, VALUE_PROBLEMS["en"]).get(problem.code)
    if sentence is None:
        return None
    params = {k: (f"{p:g}" if isinstance(p, float) else ("…" if p is None else p)) for k, p in problem.params.items()}
    try:
        return sentence.format(text=problem.text, **params)
    except (KeyError, IndexError):
        return None
# what a re-entry item still waits for (the worklist; reconcile words it in English for the exports)
_EN.update({"wl_waits_transcription": "{field} waits for transcription", "wl_waits_review": "{field} waits for review",
            "wl_disagree": "{field}: scans of sheet {sheet} disagree", "wl_not_returned": "page {pages} of {of} not returned",
            "wl_no_status": "a time or initials are written but no status is marked — check the paper"})
_FR.update({"wl_waits_transcription": "{field} attend d'être transcrit", "wl_waits_review": "{field} attend une vérification",
            "wl_disagree": "{field} : les scans de la feuille {sheet} divergent",
            "wl_not_returned": "page {pages} sur {of} pas revenue",
            "wl_no_status": "une heure ou des initiales sont écrites mais aucun état n'est coché — vérifiez le papier"})
_NL.update({"wl_waits_transcription": "{field} wacht op overtypen", "wl_waits_review": "{field} wacht op controle",
            "wl_disagree": "{field}: scans van blad {sheet} verschillen", "wl_not_returned": "pagina {pages} van {of} niet terug",
            "wl_no_status": "er staat een tijd of initialen maar geen status is aangekruist — controleer het papier"})
_EN.update({"colon": ": "})
_FR.update({"colon": "\u00a0: "})
_NL.update({"colon": ": "})
# a percentage sign after a number: French puts a (non-breaking) space before it
_EN["js"].update({"percent": "%"})
_FR["js"].update({"percent": "\u00a0%"})
_NL["js"].update({"percent": "%"})
